//! The owner and group of a written file: names resolved to ids once, when
//! `watch.toml` is read, so a typo stops the agent at start.

use std::ffi::CString;

/// Ids a written file is given; `None` leaves that one as the agent's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner {
    /// The user id.
    pub uid: Option<u32>,
    /// The group id.
    pub gid: Option<u32>,
}

impl Owner {
    /// Resolves a user and a group, each a name or a number.
    pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Self, String> {
        Ok(Self {
            uid: user.map(user_id).transpose()?,
            gid: group.map(group_id).transpose()?,
        })
    }

    /// Gives `path` these ids (a no-op when neither is set).
    pub fn apply(&self, path: &std::path::Path) -> std::io::Result<()> {
        if self.uid.is_none() && self.gid.is_none() {
            return Ok(());
        }
        std::os::unix::fs::chown(path, self.uid, self.gid)
    }
}

fn user_id(name: &str) -> Result<u32, String> {
    if let Ok(id) = name.parse() {
        return Ok(id);
    }
    let c = CString::new(name).map_err(|_| format!("`user` {name:?} holds a NUL"))?;
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: every pointer is valid for the call and the buffer's length is passed.
    let rc = unsafe { libc::getpwnam_r(c.as_ptr(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return Err(format!("`user` {name:?} is not a user on this machine"));
    }
    Ok(entry.pw_uid)
}

fn group_id(name: &str) -> Result<u32, String> {
    if let Ok(id) = name.parse() {
        return Ok(id);
    }
    let c = CString::new(name).map_err(|_| format!("`group` {name:?} holds a NUL"))?;
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: as in `user_id`.
    let rc = unsafe { libc::getgrnam_r(c.as_ptr(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return Err(format!("`group` {name:?} is not a group on this machine"));
    }
    Ok(entry.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve_and_typos_are_named() {
        let root = Owner::resolve(Some("root"), Some("root")).unwrap();
        assert_eq!((root.uid, root.gid), (Some(0), Some(0)));
        assert_eq!(Owner::resolve(Some("65534"), None).unwrap().uid, Some(65534));
        let err = Owner::resolve(Some("no-such-user-here"), None).unwrap_err();
        assert!(err.contains("no-such-user-here"), "{err}");
        assert!(Owner::resolve(None, Some("no-such-group-here")).is_err());
    }
}
