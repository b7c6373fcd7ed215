//! The owner and group of a written file: names resolved to ids once, when
//! `watch.toml` is read, so a typo stops the agent at start.

/// A `user` or `group` that names no one here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    /// No such user or group on this machine.
    #[error("`{key}` {name:?} is not a {key} on this machine")]
    Unknown {
        /// `user` or `group`.
        key: &'static str,
        /// The name.
        name: String,
    },
    /// The lookup itself failed (a NUL in the name, say).
    #[error("`{key}` {name:?} could not be looked up: {error}")]
    Lookup {
        /// `user` or `group`.
        key: &'static str,
        /// The name.
        name: String,
        /// The C library's answer.
        error: nix::Error,
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

/// A number as it is, or a user's name looked up (`getpwnam_r`).
fn user_id(name: &str) -> Result<u32, OwnerError> {
    lookup("user", name, |n| {
        nix::unistd::User::from_name(n).map(|u| u.map(|u| u.uid.as_raw()))
    })
}

/// A number as it is, or a group's name looked up (`getgrnam_r`).
fn group_id(name: &str) -> Result<u32, OwnerError> {
    lookup("group", name, |n| {
        nix::unistd::Group::from_name(n).map(|g| g.map(|g| g.gid.as_raw()))
    })
}

fn lookup(
    key: &'static str,
    name: &str,
    find: impl FnOnce(&str) -> nix::Result<Option<u32>>,
) -> Result<u32, OwnerError> {
    if let Ok(id) = name.parse() {
        return Ok(id);
    }
    let name = name.to_owned();
    match find(&name) {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(OwnerError::Unknown { key, name }),
        Err(error) => Err(OwnerError::Lookup { key, name, error }),
    }
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
