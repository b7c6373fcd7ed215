//! The owner and group of a written file: names resolved to ids once, when
//! `watch.toml` is read, so a typo stops the agent at start.

use std::ffi::CString;

/// A `user` or `group` that names no one here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    /// The name holds a NUL, which no name can.
    #[error("`{key}` {name:?} holds a NUL")]
    Nul {
        /// `user` or `group`.
        key: &'static str,
        /// The name.
        name: String,
    },
    /// No such user or group on this machine.
    #[error("`{key}` {name:?} is not a {key} on this machine")]
    Unknown {
        /// `user` or `group`.
        key: &'static str,
        /// The name.
        name: String,
    },
}

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
    pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Self, OwnerError> {
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

fn user_id(name: &str) -> Result<u32, OwnerError> {
    // SAFETY: the pointers getpwnam_r receives are valid for its call.
    lookup(
        "user",
        name,
        |n, e, b, l, f| unsafe { libc::getpwnam_r(n, e, b, l, f) },
        |p: &libc::passwd| p.pw_uid,
    )
}

fn group_id(name: &str) -> Result<u32, OwnerError> {
    // SAFETY: as above, for getgrnam_r.
    lookup(
        "group",
        name,
        |n, e, b, l, f| unsafe { libc::getgrnam_r(n, e, b, l, f) },
        |g: &libc::group| g.gr_gid,
    )
}

/// A number as it is, or a name looked up with a reentrant libc call
/// (`getpwnam_r`, `getgrnam_r`: same shape, different entry types).
fn lookup<T>(
    key: &'static str,
    name: &str,
    call: impl FnOnce(*const libc::c_char, *mut T, *mut libc::c_char, usize, *mut *mut T) -> libc::c_int,
    id: impl FnOnce(&T) -> u32,
) -> Result<u32, OwnerError> {
    if let Ok(id) = name.parse() {
        return Ok(id);
    }
    let owned = || name.to_owned();
    let c = CString::new(name).map_err(|_| OwnerError::Nul { key, name: owned() })?;
    // SAFETY: both entry types are plain C structs, valid when zeroed.
    let mut entry: T = unsafe { std::mem::zeroed() };
    let mut found: *mut T = std::ptr::null_mut();
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let rc = call(c.as_ptr(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found);
    if rc != 0 || found.is_null() {
        return Err(OwnerError::Unknown { key, name: owned() });
    }
    Ok(id(&entry))
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
        assert!(err.to_string().contains("no-such-user-here"), "{err}");
        assert!(Owner::resolve(None, Some("no-such-group-here")).is_err());
    }
}
