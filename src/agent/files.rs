//! Putting a rendered file in place the way a careful operator would: a
//! hidden candidate next to the destination (a glob such as nginx's
//! `include conf.d/*;` skips it), checked, then an atomic rename; the
//! previous file kept in memory and, if asked, on disk; the reload command
//! under a timeout; and the previous file put back (and reloaded again) if
//! the reload fails.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::config::Backup;
use super::owner::Owner;

/// Why a rendered file did not end up in force.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("writing {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("check command failed: {0}")]
    Check(CommandError),
    /// The reload failed; the previous file is back (and was reloaded, or
    /// `again` says how that failed too), or there was none and the new one
    /// was removed.
    #[error(
        "reload failed, {undone}: {failure}{}",
        .again.as_ref().map(|a| format!("; reloading the restored file failed too: {a}")).unwrap_or_default()
    )]
    Reload {
        failure: CommandError,
        again: Option<Box<CommandError>>,
        undone: &'static str,
    },
}

/// Why a check or reload command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("`{command}` did not start: {error}")]
    Start { command: String, error: std::io::Error },
    #[error("`{command}` ran past {limit:?} and was killed")]
    Overran { command: String, limit: Duration },
    #[error("`{command}`: {error}")]
    Wait { command: String, error: std::io::Error },
    /// It exited unsuccessfully; `stderr` is what it wrote there, trimmed.
    #[error("`{command}` exited with {status}: {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The file on disk already had this content.
    Unchanged,
    /// The file was replaced and, if a reload is configured, reloaded.
    Replaced { reloaded: bool },
}

pub struct Target<'a> {
    pub destination: &'a Path,
    pub mode: u32,
    pub owner: Owner,
    pub backup: &'a Backup,
    pub keep_candidate: bool,
    pub check: Option<&'a str>,
    pub reload: Option<&'a str>,
    pub reload_timeout: Duration,
}

impl Target<'_> {
    fn file_name(&self) -> std::ffi::OsString {
        self.destination.file_name().unwrap_or_default().to_os_string()
    }

    /// A hidden working file in the destination's directory, so a rename
    /// from it is atomic.
    fn hidden(&self, suffix: &str) -> PathBuf {
        let mut name = std::ffi::OsString::from(".");
        name.push(self.file_name());
        name.push(suffix);
        self.destination.with_file_name(name)
    }

    /// Where the backups go, with `suffix` on the file's name.
    fn kept(&self, suffix: &str) -> Option<PathBuf> {
        let mut name = self.file_name();
        name.push(suffix);
        match self.backup {
            Backup::None => None,
            Backup::Beside => Some(self.destination.with_file_name(name)),
            Backup::Dir(dir) => Some(dir.join(name)),
        }
    }

    /// Where the previous file is kept, if anywhere.
    pub fn backup(&self) -> Option<PathBuf> {
        self.kept(".bak")
    }

    /// Where a refused candidate is kept, if asked.
    pub fn rejected(&self) -> Option<PathBuf> {
        self.kept(".rejected").filter(|_| self.keep_candidate)
    }

    fn keep_rejected(&self, content: &[u8]) {
        if let Some(path) = self.rejected()
            && let Err(e) = write_synced(&path, content, self.mode, Owner::default())
        {
            tracing::warn!(error = %e, "the rejected file was not kept");
        }
    }

    /// Puts `content` in force. A failed check leaves the destination as it
    /// was; a failed reload puts the previous file back, or removes the new
    /// one if there was none, so the next pass tries again.
    pub async fn apply(&self, content: &str) -> Result<Applied, ApplyError> {
        let previous = match std::fs::read(self.destination) {
            Ok(current) if current == content.as_bytes() => return Ok(Applied::Unchanged),
            Ok(current) => Some(current),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(self.destination, e)),
        };
        let candidate = self.hidden(".vane-candidate");
        write_synced(&candidate, content.as_bytes(), self.mode, self.owner)?;
        if let Some(check) = self.check {
            let command = check.replace("{}", &candidate.display().to_string());
            if let Err(e) = run(&command, Some(&candidate), self.reload_timeout).await {
                let _ = std::fs::remove_file(&candidate);
                self.keep_rejected(content.as_bytes());
                return Err(ApplyError::Check(e));
            }
        }
        if let (Some(previous), Some(backup)) = (&previous, self.backup()) {
            write_synced(&backup, previous, self.mode, self.owner)?;
        }
        replace(&candidate, self.destination)?;
        let Some(reload) = self.reload else {
            return Ok(Applied::Replaced { reloaded: false });
        };
        let Err(failure) = run(reload, None, self.reload_timeout).await else {
            return Ok(Applied::Replaced { reloaded: true });
        };
        self.keep_rejected(content.as_bytes());
        let Some(previous) = previous else {
            std::fs::remove_file(self.destination).map_err(|e| io(self.destination, e))?;
            let undone = "there was no previous file, so the new one was removed";
            return Err(ApplyError::Reload {
                failure,
                again: None,
                undone,
            });
        };
        let restoring = self.hidden(".vane-restore");
        write_synced(&restoring, &previous, self.mode, self.owner)?;
        replace(&restoring, self.destination)?;
        let again = run(reload, None, self.reload_timeout).await.err().map(Box::new);
        Err(ApplyError::Reload {
            failure,
            again,
            undone: "previous file restored",
        })
    }
}

fn io(path: &Path, error: std::io::Error) -> ApplyError {
    ApplyError::Io {
        path: path.display().to_string(),
        error,
    }
}

fn write_synced(path: &Path, content: &[u8], mode: u32, owner: Owner) -> Result<(), ApplyError> {
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
    // Before the rename, so the file is never in force with the wrong owner.
    owner.apply(path).map_err(|e| io(path, e))?;
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
async fn run(command: &str, candidate: Option<&Path>, limit: Duration) -> Result<(), CommandError> {
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
    let command = command.to_owned();
    let child = match child.spawn() {
        Ok(child) => child,
        Err(error) => return Err(CommandError::Start { command, error }),
    };
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Err(_) => Err(CommandError::Overran { command, limit }),
        Ok(Err(error)) => Err(CommandError::Wait { command, error }),
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => Err(CommandError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    const NO_BACKUP: &Backup = &Backup::None;
    const BESIDE: &Backup = &Backup::Beside;

    fn target<'a>(destination: &'a Path, check: Option<&'a str>, reload: Option<&'a str>) -> Target<'a> {
        Target {
            destination,
            mode: 0o640,
            owner: Owner::default(),
            backup: BESIDE,
            keep_candidate: false,
            check,
            reload,
            reload_timeout: Duration::from_secs(5),
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| format!("<{e}>"))
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn replaces_with_a_backup_and_skips_unchanged_content() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("app.conf");
        let t = target(&dest, None, None);
        assert_eq!(t.apply("one\n").await.unwrap(), Applied::Replaced { reloaded: false });
        assert_eq!(t.apply("one\n").await.unwrap(), Applied::Unchanged);
        assert_eq!(t.apply("two\n").await.unwrap(), Applied::Replaced { reloaded: false });
        assert_eq!(read(&dest), "two\n");
        assert_eq!(read(&t.backup().unwrap()), "one\n");
        assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777, 0o640);
    }

    #[tokio::test]
    async fn backups_go_nowhere_beside_or_to_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let kept = tempfile::tempdir().unwrap();
        let dest = dir.path().join("app.conf");
        let none = Target {
            backup: NO_BACKUP,
            ..target(&dest, None, None)
        };
        none.apply("one\n").await.unwrap();
        none.apply("two\n").await.unwrap();
        // Nothing but the file itself for a glob to pick up.
        assert_eq!(names(dir.path()), ["app.conf"]);
        let in_dir = Backup::Dir(kept.path().to_owned());
        let t = Target {
            backup: &in_dir,
            ..target(&dest, None, None)
        };
        t.apply("three\n").await.unwrap();
        assert_eq!(names(dir.path()), ["app.conf"]);
        assert_eq!(read(&kept.path().join("app.conf.bak")), "two\n");
    }

    #[tokio::test]
    async fn a_failing_check_leaves_the_file_alone_and_may_keep_the_candidate() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("app.conf");
        std::fs::write(&dest, "good\n").unwrap();
        let t = target(&dest, Some("! grep -q bad {}"), None);
        assert!(matches!(t.apply("bad\n").await, Err(ApplyError::Check(_))));
        assert_eq!(read(&dest), "good\n");
        assert_eq!(names(dir.path()), ["app.conf"]);
        let keeping = Target {
            keep_candidate: true,
            ..target(&dest, Some("! grep -q bad {}"), None)
        };
        assert!(keeping.apply("bad\n").await.is_err());
        assert_eq!(read(&dir.path().join("app.conf.rejected")), "bad\n");
        assert_eq!(read(&dest), "good\n");
    }

    #[tokio::test]
    async fn the_check_sees_the_candidate_not_the_live_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("app.conf");
        std::fs::write(&dest, "old\n").unwrap();
        let log = dir.path().join("seen");
        let check = format!("cat {{}} > {} && test \"$VANE_CANDIDATE\" = {{}}", log.display());
        target(&dest, Some(&check), None).apply("new\n").await.unwrap();
        assert_eq!(read(&log), "new\n");
    }

    #[tokio::test]
    async fn a_failed_or_hung_reload_restores_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("app.conf");
        std::fs::write(&dest, "good\n").unwrap();
        let reload = format!("grep -q good {}", dest.display());
        let t = Target {
            backup: NO_BACKUP,
            ..target(&dest, None, Some(&reload))
        };
        let err = t.apply("bad\n").await.unwrap_err().to_string();
        assert!(err.contains("previous file restored"), "{err}");
        assert_eq!(read(&dest), "good\n");
        let hung = Target {
            reload_timeout: Duration::from_millis(200),
            ..target(&dest, None, Some("sleep 30"))
        };
        let started = std::time::Instant::now();
        let err = hung.apply("other\n").await.unwrap_err().to_string();
        assert!(err.contains("killed"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(read(&dest), "good\n");
    }

    #[tokio::test]
    async fn a_failed_first_reload_removes_the_new_file_so_the_next_pass_retries() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("app.conf");
        let flag = dir.path().join("reload-works");
        let reload = format!("test -e {}", flag.display());
        let t = target(&dest, None, Some(&reload));
        let err = t.apply("first\n").await.unwrap_err().to_string();
        assert!(err.contains("no previous file") && !err.contains("restored"), "{err}");
        assert!(!dest.exists());
        std::fs::write(&flag, "").unwrap();
        assert_eq!(t.apply("first\n").await.unwrap(), Applied::Replaced { reloaded: true });
        assert_eq!(read(&dest), "first\n");
    }

    #[tokio::test]
    async fn the_file_gets_its_owner_and_group() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            // Not `eprintln!`, which libtest captures: a plain `cargo test` shows this.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipping the file owner test: it needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("app.conf");
        let t = Target {
            owner: Owner::resolve(Some("65534"), Some("65534")).unwrap(),
            ..target(&dest, None, None)
        };
        t.apply("owned\n").await.unwrap();
        let meta = std::fs::metadata(&dest).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    }
}
