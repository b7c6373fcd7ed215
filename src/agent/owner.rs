//! The owner and group of a written file: names resolved to ids once, when
//! `watch.toml` is read, so a typo stops the agent at start.

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

/// A number as it is, or a user's name looked up (`getpwnam_r`).
fn user_id(name: &str) -> Result<u32, String> {
    lookup("user", name, |n| {
        nix::unistd::User::from_name(n).map(|u| u.map(|u| u.uid.as_raw()))
    })
}

/// A number as it is, or a group's name looked up (`getgrnam_r`).
fn group_id(name: &str) -> Result<u32, String> {
    lookup("group", name, |n| {
        nix::unistd::Group::from_name(n).map(|g| g.map(|g| g.gid.as_raw()))
    })
}

fn lookup(key: &str, name: &str, find: impl FnOnce(&str) -> nix::Result<Option<u32>>) -> Result<u32, String> {
    if let Ok(id) = name.parse() {
        return Ok(id);
    }
    match find(name) {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(format!("`{key}` {name:?} is not a {key} on this machine")),
        Err(e) => Err(format!("`{key}` {name:?} could not be looked up: {e}")),
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
        assert!(err.contains("no-such-user-here"), "{err}");
        assert!(Owner::resolve(None, Some("no-such-group-here")).is_err());
    }
}
