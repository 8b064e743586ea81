//! The users file: who may connect, under which name, with which token.
//!
//! It is TOML a person can edit. A token is never kept in the clear: the file holds the
//! SHA-256 of each token in hex, and a presented token is hashed and looked up.
//!
//! ```toml
//! [[users]]
//! id = 1
//! name = "wang1"
//! token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use talkbell_core::protocol::{Person, UserId};

use crate::atomic::{replace_file, ReplaceError};

/// The mode of a users file [`Users::save`] creates: the owner writes, the group (the
/// relay's, in the package) reads.
pub const NEW_FILE_MODE: u32 = 0o640;

/// Anything that names a user: a [`UserId`], a number, or a string. Integer literals work
/// too (`users.add(1, "wang1")`).
pub trait IntoUserId {
    fn into_user_id(self) -> UserId;
}

impl IntoUserId for UserId {
    fn into_user_id(self) -> UserId {
        self
    }
}
impl IntoUserId for &UserId {
    fn into_user_id(self) -> UserId {
        self.clone()
    }
}
impl IntoUserId for &str {
    fn into_user_id(self) -> UserId {
        UserId::new(self)
    }
}
impl IntoUserId for String {
    fn into_user_id(self) -> UserId {
        UserId::new(self)
    }
}
impl IntoUserId for &String {
    fn into_user_id(self) -> UserId {
        UserId::new(self.as_str())
    }
}
macro_rules! int_user_ids {
    ($($t:ty),*) => {$(
        impl IntoUserId for $t {
            fn into_user_id(self) -> UserId {
                UserId::new(self.to_string())
            }
        }
    )*};
}
int_user_ids!(i32, i64, u32, u64, usize);

/// One user of the relay.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    /// Lower-case hex SHA-256 of the user's token.
    token_sha256: String,
}

impl User {
    /// The user as the wire shows them.
    pub fn person(&self) -> Person {
        Person { id: self.id.clone(), name: self.name.clone() }
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User").field("id", &self.id).field("name", &self.name).finish_non_exhaustive()
    }
}

/// Why the users file could not be read, written or changed.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: ReplaceError },
    #[error("cannot render the users file: {0}")]
    Render(#[from] toml::ser::Error),
    #[error("{path} is not a valid users file: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("a user with id {0} already exists")]
    DuplicateId(UserId),
    #[error("there is no user with id {0}")]
    UnknownId(UserId),
    #[error("invalid user: {0}")]
    BadUser(String),
}

/// The table of users, by id and by token hash.
#[derive(Clone, Default)]
pub struct Users {
    list: Vec<User>,
    by_id: HashMap<UserId, usize>,
    by_hash: HashMap<String, usize>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.list).finish()
    }
}

/// The SHA-256 of a token, as lower-case hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// A new random token: 32 random bytes as URL-safe base64 without padding (43 characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum FileId {
    Int(i64),
    Str(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    id: FileId,
    name: String,
    token_sha256: String,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileUsers {
    #[serde(default)]
    users: Vec<FileUser>,
}

const HEADER: &str = "\
# Talkbell relay users. Each token is kept only as its SHA-256 (hex), never in the clear.
# Add a user with: talkbell-relay add-user --users THIS_FILE --id ID --name NAME
";

/// A TOML error on one line (for the log): "line L, column C: message".
fn one_line(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', "; ");
    let Some(at) = e.span().map(|s| s.start.min(text.len())) else { return message };
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {message}")
}

fn valid_name(name: &str) -> Result<String, UsersError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(UsersError::BadUser("the name is empty".into()));
    }
    if name.chars().any(char::is_control) {
        return Err(UsersError::BadUser("the name has control characters".into()));
    }
    Ok(name.to_owned())
}

fn valid_id(id: &UserId) -> Result<(), UsersError> {
    let s = id.as_str();
    if s.trim().is_empty() || s.trim() != s {
        return Err(UsersError::BadUser(format!("the id {s:?} is empty or has surrounding spaces")));
    }
    if s.chars().any(char::is_control) {
        return Err(UsersError::BadUser("the id has control characters".into()));
    }
    Ok(())
}

impl Users {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.list.iter()
    }

    pub fn get(&self, id: &UserId) -> Option<&User> {
        self.by_id.get(id).map(|&i| &self.list[i])
    }

    /// Whether `user` is still in the table with the token it signed in with.
    pub(crate) fn still_valid(&self, user: &User) -> bool {
        self.get(&user.id).is_some_and(|u| u.token_sha256 == user.token_sha256)
    }

    /// The user whose token this is, if any.
    pub fn authenticate(&self, token: &str) -> Option<&User> {
        if token.trim().is_empty() {
            return None;
        }
        self.by_hash.get(&hash_token(token)).map(|&i| &self.list[i])
    }

    /// Adds a user with a new random token and returns the token (shown once, never
    /// stored). A user with the same id is replaced; use [`Users::try_add`] to refuse.
    ///
    /// # Panics
    /// If the id is empty or the name is empty: this is for code and tests, where such a
    /// call is a bug. The CLI goes through [`Users::try_add`].
    #[allow(clippy::expect_used)] // the panic documented above
    pub fn add(&mut self, id: impl IntoUserId, name: impl Into<String>) -> String {
        let token = new_token();
        self.add_with_token(id, name, &token).expect("a valid user");
        token
    }

    /// Adds a user with a new random token, refusing an id that is already taken.
    pub fn try_add(&mut self, id: impl IntoUserId, name: &str) -> Result<String, UsersError> {
        let id = id.into_user_id();
        if self.by_id.contains_key(&id) {
            return Err(UsersError::DuplicateId(id));
        }
        let token = new_token();
        self.add_with_token(id, name, &token)?;
        Ok(token)
    }

    /// Removes a user and returns them.
    pub fn remove(&mut self, id: impl IntoUserId) -> Result<User, UsersError> {
        let id = id.into_user_id();
        let i = *self.by_id.get(&id).ok_or(UsersError::UnknownId(id))?;
        let user = self.list.remove(i);
        // The users after it moved down by one: their places are indexed anew (a removal
        // is one command of the CLI, not part of a load).
        self.reindex();
        Ok(user)
    }

    /// Gives a user a new random token and returns it (shown once, never stored); the old
    /// token stops working.
    pub fn rotate_token(&mut self, id: impl IntoUserId) -> Result<String, UsersError> {
        let id = id.into_user_id();
        let i = *self.by_id.get(&id).ok_or_else(|| UsersError::UnknownId(id.clone()))?;
        let token = new_token();
        let old = std::mem::replace(&mut self.list[i].token_sha256, hash_token(&token));
        self.by_hash.remove(&old);
        self.by_hash.insert(self.list[i].token_sha256.clone(), i);
        Ok(token)
    }

    /// Adds (or replaces) a user with a token of the caller's choosing.
    pub fn add_with_token(
        &mut self,
        id: impl IntoUserId,
        name: impl Into<String>,
        token: &str,
    ) -> Result<(), UsersError> {
        if token.trim().is_empty() {
            return Err(UsersError::BadUser("the token is empty".into()));
        }
        self.insert(id.into_user_id(), &name.into(), hash_token(token))
    }

    fn insert(&mut self, id: UserId, name: &str, token_sha256: String) -> Result<(), UsersError> {
        valid_id(&id)?;
        let name = valid_name(name)?;
        if let Some(&other) = self.by_hash.get(&token_sha256) {
            if self.list[other].id != id {
                return Err(UsersError::BadUser(format!(
                    "user {id} has the same token as user {}",
                    self.list[other].id
                )));
            }
        }
        let hash = token_sha256.clone();
        let user = User { id: id.clone(), name, token_sha256 };
        // Only this user's entries change: a load of n users indexes each one once.
        let i = match self.by_id.get(&id) {
            Some(&i) => {
                let old = std::mem::replace(&mut self.list[i], user);
                self.by_hash.remove(&old.token_sha256);
                i
            }
            None => {
                self.list.push(user);
                self.by_id.insert(id, self.list.len() - 1);
                self.list.len() - 1
            }
        };
        self.by_hash.insert(hash, i);
        Ok(())
    }

    fn reindex(&mut self) {
        self.by_id = self.list.iter().enumerate().map(|(i, u)| (u.id.clone(), i)).collect();
        self.by_hash = self.list.iter().enumerate().map(|(i, u)| (u.token_sha256.clone(), i)).collect();
    }

    /// Reads a users file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, UsersError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| UsersError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|reason| UsersError::Invalid { path: path.to_owned(), reason })
    }

    /// Reads a users file, or an empty table when there is no file yet.
    pub fn load_or_new(path: impl AsRef<Path>) -> Result<Self, UsersError> {
        let path = path.as_ref();
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::new()),
            _ => Self::load(path),
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        let file: FileUsers = toml::from_str(text).map_err(|e| one_line(text, &e))?;
        let n = file.users.len();
        let mut users =
            Users { list: Vec::with_capacity(n), by_id: HashMap::with_capacity(n), by_hash: HashMap::with_capacity(n) };
        for (n, u) in file.users.into_iter().enumerate() {
            let id = match u.id {
                FileId::Int(i) => UserId::new(i.to_string()),
                FileId::Str(s) => UserId::new(s),
            };
            let hash = u.token_sha256.trim().to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("user #{} (id {id}): token_sha256 must be 64 hex characters", n + 1));
            }
            if users.by_id.contains_key(&id) {
                return Err(format!("user id {id} appears twice"));
            }
            users.insert(id.clone(), &u.name, hash).map_err(|e| format!("user id {id}: {e}"))?;
        }
        Ok(users)
    }

    /// The file's text.
    fn render(&self) -> Result<String, UsersError> {
        let file = FileUsers {
            users: self
                .list
                .iter()
                .map(|u| FileUser {
                    id: match u.id.as_str().parse::<i64>() {
                        Ok(n) if n.to_string() == u.id.as_str() => FileId::Int(n),
                        _ => FileId::Str(u.id.as_str().to_owned()),
                    },
                    name: u.name.clone(),
                    token_sha256: u.token_sha256.clone(),
                })
                .collect(),
        };
        let body = toml::to_string(&file)?;
        Ok(format!("{HEADER}\n{body}"))
    }

    /// Writes the file atomically (a new file beside it, synced, then renamed over it).
    /// An existing file keeps its mode, owner and group; a new one is created with
    /// [`NEW_FILE_MODE`], owned by the caller.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), UsersError> {
        let path = path.as_ref();
        let text = self.render()?;
        replace_file(path, text.as_bytes(), NEW_FILE_MODE)
            .map_err(|source| UsersError::Write { path: path.to_owned(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_url_safe_and_random() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn add_authenticate_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let mut users = Users::new();
        let t1 = users.add(1, "wang1");
        let t2 = users.try_add("u-2", "wang2").unwrap();
        assert!(matches!(users.try_add(1, "again"), Err(UsersError::DuplicateId(_))));
        assert_eq!(users.authenticate(&t1).unwrap().name, "wang1");
        assert_eq!(users.authenticate(&t2).unwrap().id, UserId::from("u-2"));
        assert!(users.authenticate("nope").is_none());
        assert!(users.authenticate("").is_none());
        users.save(&path).unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&t1) && !text.contains(&t2), "{text}");
        assert!(text.contains("id = 1\n"), "{text}");
        assert!(text.contains("id = \"u-2\""), "{text}");

        let back = Users::load(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.authenticate(&t1).unwrap().id, UserId::from(1));
        assert_eq!(back.get(&UserId::from("1")).unwrap().name, "wang1");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o640, "owner writes, group reads, others nothing");
        }
    }

    #[test]
    fn hand_written_files_are_checked() {
        let ok = format!(
            "[[users]]\nid = \"7\"\nname = \"seven\"\ntoken_sha256 = \"{}\"\n",
            hash_token("secret").to_uppercase()
        );
        let users = Users::parse(&ok).unwrap();
        assert_eq!(users.authenticate("secret").unwrap().id, UserId::from(7));

        for bad in [
            "[[users]]\nid = 1\nname = \"a\"\ntoken_sha256 = \"xyz\"\n".to_owned(),
            format!("[[users]]\nid = 1\nname = \"\"\ntoken_sha256 = \"{}\"\n", hash_token("a")),
            format!(
                "[[users]]\nid = 1\nname = \"a\"\ntoken_sha256 = \"{}\"\n[[users]]\nid = \"1\"\nname = \"b\"\ntoken_sha256 = \"{}\"\n",
                hash_token("a"),
                hash_token("b")
            ),
            format!("[[users]]\nid = 1\nname = \"a\"\ntoken = \"x\"\ntoken_sha256 = \"{}\"\n", hash_token("a")),
            "not toml [".to_owned(),
        ] {
            assert!(Users::parse(&bad).is_err(), "accepted: {bad}");
        }
        assert_eq!(Users::parse("").unwrap().len(), 0);
        let err = Users::parse("[[users]]\nid = 1\nnam = \"x\"\n").unwrap_err();
        assert!(err.starts_with("line 3, column 1: unknown field `nam`") && !err.contains('\n'), "{err}");
    }

    #[test]
    fn remove_and_rotate() {
        let mut users = Users::new();
        let t1 = users.add(1, "wang1");
        let t2 = users.add(2, "wang2");
        let before = users.get(&UserId::from(2)).unwrap().clone();
        let t2_new = users.rotate_token(2).unwrap();
        assert_ne!(t2, t2_new);
        assert!(users.authenticate(&t2).is_none());
        assert_eq!(users.authenticate(&t2_new).unwrap().id, UserId::from(2));
        assert!(!users.still_valid(&before));
        assert_eq!(users.remove(1).unwrap().name, "wang1");
        assert!(users.authenticate(&t1).is_none());
        assert!(matches!(users.remove(1), Err(UsersError::UnknownId(_))));
        assert!(matches!(users.rotate_token("nobody"), Err(UsersError::UnknownId(_))));
        assert_eq!(users.len(), 1);
    }

    /// A file of 100,000 users loads whole and indexed; each user found by id and by
    /// token, a replaced or rotated token no longer works (the figure of how long it takes
    /// is `cargo run --release -p talkbell-relay --example users_load`).
    #[test]
    fn a_hundred_thousand_users_load_with_every_index_right() {
        const N: u64 = 100_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let mut users = Users::new();
        for id in 0..N {
            users.add_with_token(id, format!("user{id}"), &format!("token-{id}")).unwrap();
        }
        // Replacing a user (same id) drops its old token from the index.
        users.add_with_token(7, "seven", "token-seven").unwrap();
        assert!(users.authenticate("token-7").is_none());
        users.save(&path).unwrap();

        let mut back = Users::load(&path).unwrap();
        assert_eq!(back.len(), usize::try_from(N).unwrap());
        assert!(back.iter().map(|u| u.id.clone()).eq((0..N).map(UserId::from)), "the file's order is kept");
        for id in [0, 1, 7, 4242, 50_000, N - 1] {
            let user = back.get(&UserId::from(id)).unwrap();
            let token = if id == 7 { "token-seven".to_owned() } else { format!("token-{id}") };
            assert_eq!(back.authenticate(&token).map(|u| &u.id), Some(&user.id), "user {id}");
            assert_eq!(user.name, if id == 7 { "seven".to_owned() } else { format!("user{id}") });
        }
        assert!(back.get(&UserId::from(N)).is_none());
        assert!(back.authenticate("token-7").is_none());
        assert!(back.authenticate(&format!("token-{N}")).is_none());

        // The indexes stay right after the changes a CLI command makes.
        let rotated = back.rotate_token(99_999).unwrap();
        assert!(back.authenticate("token-99999").is_none());
        assert_eq!(back.authenticate(&rotated).unwrap().id, UserId::from(99_999));
        back.remove(10).unwrap();
        assert!(back.authenticate("token-10").is_none());
        assert_eq!(back.authenticate("token-11").unwrap().id, UserId::from(11));
        assert_eq!(back.authenticate(&rotated).unwrap().id, UserId::from(99_999));
        assert_eq!(back.len(), usize::try_from(N).unwrap() - 1);
        // A duplicate token is still refused.
        assert!(back.add_with_token("new", "new", "token-12").is_err());
    }

    #[test]
    fn debug_never_shows_the_hash() {
        let mut users = Users::new();
        users.add_with_token(1, "a", "tok").unwrap();
        let dbg = format!("{users:?}");
        assert!(!dbg.contains(&hash_token("tok")), "{dbg}");
    }
}
