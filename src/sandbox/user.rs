//! `USER` resolution as Docker does it, from the container's own
//! /etc/passwd and /etc/group: `name`, `uid`, `name:group`, `uid:gid`.

/// A resolved user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary gids: the primary group, then the groups that list
    /// the user by name.
    pub groups: Vec<u32>,
    /// Home directory (for HOME), `/` when unknown.
    pub home: String,
}

struct Entry<'a> {
    name: &'a str,
    id: u32,
    gid: u32,
    home: &'a str,
    members: Vec<&'a str>,
}

fn passwd(text: &str) -> Vec<Entry<'_>> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(Entry {
                name: f[0],
                id: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5],
                members: vec![],
            })
        })
        .collect()
}

fn group(text: &str) -> Vec<Entry<'_>> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(Entry {
                name: f[0],
                id: f[2].parse().ok()?,
                gid: 0,
                home: "",
                members: f[3].split(',').filter(|m| !m.is_empty()).collect(),
            })
        })
        .collect()
}

/// A group by number, or by name in the group file.
fn group_id(g: &str, groups: &[Entry<'_>]) -> Result<u32, String> {
    match g.parse::<u32>() {
        Ok(n) => Ok(n),
        Err(_) => groups
            .iter()
            .find(|e| e.name == g)
            .map(|e| e.id)
            .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file")),
    }
}

/// Resolves `spec` (empty means root) against the two files' contents.
pub fn resolve(spec: &str, passwd_text: &str, group_text: &str) -> Result<User, String> {
    let (user, group_spec) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users = passwd(passwd_text);
    let groups = group(group_text);
    let user = if user.is_empty() { "0" } else { user };
    let entry = match user.parse::<u32>() {
        Ok(uid) => users.iter().find(|e| e.id == uid),
        Err(_) => Some(users.iter().find(|e| e.name == user).ok_or_else(|| {
            format!("unable to find user {user}: no matching entries in passwd file")
        })?),
    };
    let uid = entry.map_or_else(|| user.parse().unwrap_or(0), |e| e.id);
    let mut gid = entry.map_or(0, |e| e.gid);
    if let Some(g) = group_spec.filter(|g| !g.is_empty()) {
        gid = group_id(g, &groups)?;
    }
    // The primary group first, always (BuildKit's ensureAdditionalGids,
    // Docker's daemon alike): `id` shows it in groups=.
    let mut supplementary = vec![gid];
    if let (Some(e), None) = (entry, group_spec) {
        // An explicit group replaces the supplementary groups, as in Docker.
        supplementary.extend(
            groups
                .iter()
                .filter(|g| g.members.contains(&e.name) && g.id != gid)
                .map(|g| g.id),
        );
    }
    Ok(User {
        uid,
        gid,
        groups: supplementary,
        home: entry.map_or("/", |e| e.home).to_string(),
    })
}

/// `--group-add` values (names from the container's /etc/group, or
/// numbers) added to `user`'s supplementary groups.
pub fn add_groups(user: &mut User, extra: &[String], group_text: &str) -> Result<(), String> {
    let groups = group(group_text);
    for g in extra {
        let id = group_id(g, &groups)?;
        if !user.groups.contains(&id) {
            user.groups.push(id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nbroken line\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nstaff:x:50:app,other\nwheel:x:10:root\n";

    #[test]
    fn docker_user_forms() {
        let r = |s: &str| resolve(s, PASSWD, GROUP);
        assert_eq!(
            r("").unwrap(),
            User {
                uid: 0,
                gid: 0,
                groups: vec![0, 10],
                home: "/root".into()
            }
        );
        assert_eq!(
            r("app").unwrap(),
            User {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 50],
                home: "/home/app".into()
            }
        );
        assert_eq!(r("1000").unwrap().home, "/home/app");
        assert_eq!(
            r("4242").unwrap(),
            User {
                uid: 4242,
                gid: 0,
                groups: vec![0],
                home: "/".into()
            }
        );
        assert_eq!(
            r("app:staff").unwrap(),
            User {
                uid: 1000,
                gid: 50,
                groups: vec![50],
                home: "/home/app".into()
            }
        );
        assert_eq!(
            r("1:2").unwrap(),
            User {
                uid: 1,
                gid: 2,
                groups: vec![2],
                home: "/".into()
            }
        );
        assert_eq!(
            r("ghost").unwrap_err(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert_eq!(
            r("app:ghosts").unwrap_err(),
            "unable to find group ghosts: no matching entries in group file"
        );
    }
}
