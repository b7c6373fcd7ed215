//! Putting a rendered file in place the way a careful operator would: a
//! candidate next to the destination, checked, then an atomic rename with a
//! backup of what was there; the reload command under a timeout; and the
//! backup put back (and reloaded again) if the reload fails.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Why a rendered file did not end up in force.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("writing {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("check command failed: {0}")]
    Check(String),
    /// The reload failed; the previous file is back (and was reloaded).
    #[error("reload failed, previous file restored: {0}")]
    Reload(String),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The file on disk already had this content.
    Unchanged,
    Replaced,
}

pub struct Target<'a> {
    pub destination: &'a Path,
    pub mode: u32,
    pub check: Option<&'a str>,
    pub reload: Option<&'a str>,
    pub reload_timeout: Duration,
}

impl Target<'_> {
    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.destination.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.destination.with_file_name(name)
    }

    pub fn backup(&self) -> PathBuf {
        self.sibling(".bak")
    }

    /// Puts `content` in force. A failed check leaves the destination as it
    /// was; a failed reload puts the previous file back.
    pub async fn apply(&self, content: &str) -> Result<Applied, ApplyError> {
        if std::fs::read(self.destination).is_ok_and(|current| current == content.as_bytes()) {
            return Ok(Applied::Unchanged);
        }
        let candidate = self.sibling(".vane-candidate");
        write_synced(&candidate, content.as_bytes(), self.mode)?;
        if let Some(check) = self.check {
            let command = check.replace("{}", &candidate.display().to_string());
            if let Err(e) = run(&command, Some(&candidate), self.reload_timeout).await {
                let _ = std::fs::remove_file(&candidate);
                return Err(ApplyError::Check(e));
            }
        }
        let had_previous = self.destination.exists();
        if had_previous {
            let previous = std::fs::read(self.destination).map_err(|e| io(self.destination, e))?;
            write_synced(&self.backup(), &previous, self.mode)?;
        }
        replace(&candidate, self.destination)?;
        let Some(reload) = self.reload else {
            return Ok(Applied::Replaced);
        };
        let Err(failure) = run(reload, None, self.reload_timeout).await else {
            return Ok(Applied::Replaced);
        };
        if had_previous {
            let previous = std::fs::read(self.backup()).map_err(|e| io(&self.backup(), e))?;
            let restoring = self.sibling(".vane-restore");
            write_synced(&restoring, &previous, self.mode)?;
            replace(&restoring, self.destination)?;
            if let Err(again) = run(reload, None, self.reload_timeout).await {
                return Err(ApplyError::Reload(format!(
                    "{failure}; reloading the restored file failed too: {again}"
                )));
            }
        }
        Err(ApplyError::Reload(failure))
    }
}

fn io(path: &Path, error: std::io::Error) -> ApplyError {
    ApplyError::Io {
        path: path.display().to_string(),
        error,
    }
}

fn write_synced(path: &Path, content: &[u8], mode: u32) -> Result<(), ApplyError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io(path, e))?;
    file.write_all(content).map_err(|e| io(path, e))?;
    // `mode` applies only at creation; an existing file gets it here.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).map_err(|e| io(path, e))?;
    file.sync_all().map_err(|e| io(path, e))
}

/// Renames `from` over `to` and syncs the directory, so the new name
/// survives a crash.
fn replace(from: &Path, to: &Path) -> Result<(), ApplyError> {
    std::fs::rename(from, to).map_err(|e| io(to, e))?;
    let dir = to
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

/// Runs `command` with `sh -c`, killed after `limit`.
async fn run(command: &str, candidate: Option<&Path>, limit: Duration) -> Result<(), String> {
    let mut child = Command::new("sh");
    child
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(candidate) = candidate {
        child.env("VANE_CANDIDATE", candidate);
    }
    let child = child.spawn().map_err(|e| format!("`{command}` did not start: {e}"))?;
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Err(_) => Err(format!("`{command}` ran past {limit:?} and was killed")),
        Ok(Err(e)) => Err(format!("`{command}`: {e}")),
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(format!("`{command}` exited with {}: {}", output.status, stderr.trim()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(destination: &'a Path, check: Option<&'a str>, reload: Option<&'a str>) -> Target<'a> {
        Target {
            destination,
            mode: 0o640,
            check,
            reload,
            reload_timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn replaces_with_a_backup_and_skips_unchanged_content() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("app.conf");
        let t = target(&dest, None, None);
        assert_eq!(t.apply("one\n").await.unwrap(), Applied::Replaced);
        assert_eq!(t.apply("one\n").await.unwrap(), Applied::Unchanged);
        assert_eq!(t.apply("two\n").await.unwrap(), Applied::Replaced);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "two\n");
        assert_eq!(std::fs::read_to_string(t.backup()).unwrap(), "one\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777, 0o640);
    }

    #[tokio::test]
    async fn a_failing_check_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("app.conf");
        std::fs::write(&dest, "good\n").unwrap();
        let t = target(&dest, Some("! grep -q bad {}"), None);
        assert!(matches!(t.apply("bad\n").await, Err(ApplyError::Check(_))));
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "good\n");
        assert!(!dir.path().join("app.conf.vane-candidate").exists());
    }

    #[tokio::test]
    async fn a_failed_or_hung_reload_restores_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("app.conf");
        std::fs::write(&dest, "good\n").unwrap();
        let reload = format!("grep -q good {}", dest.display());
        let t = target(&dest, None, Some(&reload));
        assert!(matches!(t.apply("bad\n").await, Err(ApplyError::Reload(_))));
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "good\n");
        let hung = Target {
            reload_timeout: Duration::from_millis(200),
            ..target(&dest, None, Some("sleep 30"))
        };
        let started = std::time::Instant::now();
        let err = hung.apply("other\n").await.unwrap_err().to_string();
        assert!(err.contains("killed"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "good\n");
    }
}
