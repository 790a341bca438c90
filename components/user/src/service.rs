//! Business rules of the user service: registration, login, token validation and the
//! current user. Storage and the host's identity provider (bcrypt, JWT) sit behind small
//! traits, so the rules are unit-tested natively with in-memory fakes.

use crate::model::{
    AccessToken, Credentials, InvalidToken, NewUser, StoredUser, TokenValidation, User,
};
use std::fmt;

pub use platform_guest::db::StoreError;

/// Why a user could not be inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertError {
    /// The username's UNIQUE constraint was violated: someone holds the name.
    UsernameTaken,
    Store(StoreError),
}

impl From<StoreError> for InsertError {
    fn from(error: StoreError) -> Self {
        InsertError::Store(error)
    }
}

/// What a user operation can fail with; routes map each to a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserError {
    /// 400: the username is registered already.
    UsernameTaken(String),
    /// 401: unknown username or wrong password (deliberately indistinguishable).
    InvalidCredentials,
    /// 401: the right password of a deactivated user.
    InactiveUser,
    /// 401: the authenticated caller's user no longer exists or is inactive.
    CredentialsRejected,
    /// 503 or 500.
    Store(StoreError),
}

impl From<StoreError> for UserError {
    fn from(error: StoreError) -> Self {
        UserError::Store(error)
    }
}

impl UserError {
    /// The HTTP status of the error.
    pub fn status(&self) -> u16 {
        match self {
            UserError::UsernameTaken(_) => 400,
            UserError::InvalidCredentials
            | UserError::InactiveUser
            | UserError::CredentialsRejected => 401,
            UserError::Store(StoreError::Unavailable(_)) => 503,
            UserError::Store(StoreError::Internal(_)) => 500,
        }
    }

    /// True for the 401s, which carry `www-authenticate: Bearer`.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == 401
    }
}

/// The `detail` message clients see (store errors never show their cause).
impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserError::UsernameTaken(username) => {
                write!(f, "Username '{username}' is already registered")
            }
            UserError::InvalidCredentials => f.write_str("Incorrect username or password"),
            UserError::InactiveUser => f.write_str("Inactive user"),
            UserError::CredentialsRejected => f.write_str("Could not validate credentials"),
            UserError::Store(StoreError::Unavailable(_)) => f.write_str("Database unavailable"),
            UserError::Store(StoreError::Internal(_)) => f.write_str("Internal Server Error"),
        }
    }
}

/// The users table. Each method is one SQL statement.
pub trait UserStore {
    /// Inserts an active user; `UsernameTaken` comes from the UNIQUE constraint, so two
    /// concurrent registrations of one name cannot both succeed.
    fn insert(&self, username: &str, hashed_password: &str) -> Result<User, InsertError>;
    /// The user and its hash by exact username.
    fn find_by_username(&self, username: &str) -> Result<Option<StoredUser>, StoreError>;
    fn find_by_id(&self, id: i64) -> Result<Option<User>, StoreError>;
}

/// The claims of a token whose signature and expiry were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `sub`: the username.
    pub subject: String,
    pub user_id: i64,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: i64,
}

/// Why a token could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Expired,
    /// Malformed, tampered, wrongly signed, `alg: none`...
    Invalid(String),
}

/// Password hashing and token signing. The host does both (the signing secret never enters
/// the component); these calls cannot fail short of a host trap.
pub trait IdentityProvider {
    fn hash_password(&self, password: &str) -> String;
    /// False for a wrong password and for a malformed hash.
    fn verify_password(&self, password: &str, hash: &str) -> bool;
    /// A signed token with `sub` = `subject`, `user_id` and `exp`.
    fn issue_token(&self, subject: &str, user_id: i64) -> String;
    fn decode_token(&self, token: &str) -> Result<Claims, DecodeError>;
}

/// The user use cases over a store and an identity provider.
pub struct UserService<S, P> {
    store: S,
    identity: P,
}

impl<S: UserStore, P: IdentityProvider> UserService<S, P> {
    pub fn new(store: S, identity: P) -> Self {
        UserService { store, identity }
    }

    /// Registers a user with a bcrypt hash of the password. A taken username is detected by
    /// the database's UNIQUE constraint, not by a racy look-up first.
    pub fn register(&self, new: &NewUser) -> Result<User, UserError> {
        let hashed = self.identity.hash_password(&new.password);
        match self.store.insert(&new.username, &hashed) {
            Ok(user) => Ok(user),
            Err(InsertError::UsernameTaken) => Err(UserError::UsernameTaken(new.username.clone())),
            Err(InsertError::Store(error)) => Err(error.into()),
        }
    }

    /// Checks the credentials and issues an access token. The password is checked before
    /// the active flag, so only someone who knows the password learns that a user is
    /// inactive; an unknown username still costs one bcrypt verification.
    pub fn login(&self, credentials: &Credentials) -> Result<AccessToken, UserError> {
        let Some(stored) = self.store.find_by_username(&credentials.username)? else {
            // As much bcrypt work as a wrong password costs (one hash at the host's cost), so
            // the answer time does not tell which usernames exist.
            self.identity.hash_password(&credentials.password);
            return Err(UserError::InvalidCredentials);
        };
        if !self
            .identity
            .verify_password(&credentials.password, &stored.hashed_password)
        {
            return Err(UserError::InvalidCredentials);
        }
        if !stored.user.is_active {
            return Err(UserError::InactiveUser);
        }
        let token = self
            .identity
            .issue_token(&stored.user.username, stored.user.id);
        Ok(AccessToken::bearer(token))
    }

    /// The answer of `POST /validate-token`. A token is valid only if the host verified its
    /// signature and expiry AND its user still exists (looked up by id), still has the
    /// token's username, and is active. Only database failures are errors; every other
    /// outcome is a `valid: false` answer.
    pub fn validate_token(&self, token: &str) -> Result<TokenValidation, UserError> {
        let claims = match self.identity.decode_token(token) {
            Ok(claims) => claims,
            Err(DecodeError::Expired) => {
                return Ok(TokenValidation::invalid(InvalidToken::Expired))
            }
            Err(DecodeError::Invalid(_)) => {
                return Ok(TokenValidation::invalid(InvalidToken::Malformed))
            }
        };
        let user = match self.store.find_by_id(claims.user_id)? {
            Some(user) if user.username == claims.subject => user,
            // Gone, or the id now names someone else: the token's user does not exist.
            _ => return Ok(TokenValidation::invalid(InvalidToken::UserNotFound)),
        };
        if !user.is_active {
            return Ok(TokenValidation::invalid(InvalidToken::UserInactive));
        }
        Ok(TokenValidation::valid(&user))
    }

    /// The authenticated caller's user. The host validated the token just before; a user
    /// deleted or deactivated since is still refused.
    pub fn current_user(&self, user_id: i64) -> Result<User, UserError> {
        match self.store.find_by_id(user_id)? {
            Some(user) if user.is_active => Ok(user),
            _ => Err(UserError::CredentialsRejected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    // ---------- fakes ----------

    #[derive(Default)]
    struct MemoryStoreState {
        rows: BTreeMap<i64, StoredUser>,
        next_id: i64,
        down: bool,
        broken: bool,
        /// Simulates a concurrent registration that commits between a (hypothetical)
        /// pre-check and our INSERT: the next insert of that name hits the constraint.
        concurrent_insert: Option<String>,
        find_by_username_calls: usize,
    }

    /// An in-memory users table with the SQL statements' semantics (including the
    /// UNIQUE constraint on `username`).
    #[derive(Clone, Default)]
    struct MemoryStore(Rc<RefCell<MemoryStoreState>>);

    impl MemoryStore {
        fn check(&self) -> Result<(), StoreError> {
            let state = self.0.borrow();
            if state.down {
                Err(StoreError::Unavailable("connection refused".into()))
            } else if state.broken {
                Err(StoreError::Internal(
                    "syntax error at or near SELECT".into(),
                ))
            } else {
                Ok(())
            }
        }

        fn add(&self, username: &str, password: &str, is_active: bool) -> User {
            let user = self
                .insert(username, &FakeIdentity::hash(password))
                .unwrap();
            self.0
                .borrow_mut()
                .rows
                .get_mut(&user.id)
                .unwrap()
                .user
                .is_active = is_active;
            User { is_active, ..user }
        }

        fn hash_of(&self, username: &str) -> Option<String> {
            self.0
                .borrow()
                .rows
                .values()
                .find(|row| row.user.username == username)
                .map(|row| row.hashed_password.clone())
        }

        fn delete(&self, id: i64) {
            self.0.borrow_mut().rows.remove(&id);
        }

        fn deactivate(&self, id: i64) {
            self.0
                .borrow_mut()
                .rows
                .get_mut(&id)
                .unwrap()
                .user
                .is_active = false;
        }

        fn count(&self) -> usize {
            self.0.borrow().rows.len()
        }
    }

    impl UserStore for MemoryStore {
        fn insert(&self, username: &str, hashed_password: &str) -> Result<User, InsertError> {
            self.check()?;
            let mut state = self.0.borrow_mut();
            if state.concurrent_insert.as_deref() == Some(username) {
                state.concurrent_insert = None;
                state.next_id += 1;
                let id = state.next_id;
                state
                    .rows
                    .insert(id, stored(id, username, "$2b$other", true));
            }
            if state.rows.values().any(|row| row.user.username == username) {
                return Err(InsertError::UsernameTaken);
            }
            state.next_id += 1;
            let id = state.next_id;
            let row = stored(id, username, hashed_password, true);
            state.rows.insert(id, row.clone());
            Ok(row.user)
        }

        fn find_by_username(&self, username: &str) -> Result<Option<StoredUser>, StoreError> {
            self.check()?;
            self.0.borrow_mut().find_by_username_calls += 1;
            Ok(self
                .0
                .borrow()
                .rows
                .values()
                .find(|row| row.user.username == username)
                .cloned())
        }

        fn find_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
            self.check()?;
            Ok(self.0.borrow().rows.get(&id).map(|row| row.user.clone()))
        }
    }

    fn stored(id: i64, username: &str, hashed_password: &str, is_active: bool) -> StoredUser {
        StoredUser {
            user: User {
                id,
                username: username.into(),
                is_active,
                created_at: "2026-11-25T10:00:00.123456Z".into(),
                updated_at: "2026-11-25T10:00:00.123456Z".into(),
            },
            hashed_password: hashed_password.into(),
        }
    }

    /// A transparent stand-in for the host: `hash:<password>` hashes, `token:<sub>:<id>`
    /// tokens, a fixed set of expired tokens, and a record of every bcrypt job.
    #[derive(Clone, Default)]
    struct FakeIdentity {
        verified_against: Rc<RefCell<Vec<String>>>,
    }

    impl FakeIdentity {
        fn hash(password: &str) -> String {
            format!("hash:{password}")
        }

        fn token(subject: &str, user_id: i64) -> String {
            format!("token:{subject}:{user_id}")
        }

        fn verifications(&self) -> Vec<String> {
            self.verified_against.borrow().clone()
        }
    }

    impl IdentityProvider for FakeIdentity {
        fn hash_password(&self, password: &str) -> String {
            self.verified_against
                .borrow_mut()
                .push(format!("hashed:{password}"));
            Self::hash(password)
        }

        fn verify_password(&self, password: &str, hash: &str) -> bool {
            self.verified_against.borrow_mut().push(hash.to_string());
            hash == Self::hash(password)
        }

        fn issue_token(&self, subject: &str, user_id: i64) -> String {
            Self::token(subject, user_id)
        }

        fn decode_token(&self, token: &str) -> Result<Claims, DecodeError> {
            if token.starts_with("expired:") {
                return Err(DecodeError::Expired);
            }
            let mut parts = token.splitn(3, ':');
            match (
                parts.next(),
                parts.next(),
                parts.next().map(str::parse::<i64>),
            ) {
                (Some("token"), Some(subject), Some(Ok(user_id))) => Ok(Claims {
                    subject: subject.into(),
                    user_id,
                    expires_at: 4_000_000_000,
                }),
                _ => Err(DecodeError::Invalid("InvalidToken".into())),
            }
        }
    }

    fn service(
        store: &MemoryStore,
        identity: &FakeIdentity,
    ) -> UserService<MemoryStore, FakeIdentity> {
        UserService::new(store.clone(), identity.clone())
    }

    fn new_user(username: &str, password: &str) -> NewUser {
        NewUser {
            username: username.into(),
            password: password.into(),
        }
    }

    fn credentials(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    // ---------- registration ----------

    #[test]
    fn register_stores_only_the_hash() {
        let store = MemoryStore::default();
        let identity = FakeIdentity::default();
        let user = service(&store, &identity)
            .register(&new_user("alice", "Secret1"))
            .unwrap();
        assert_eq!(
            (user.id, user.username.as_str(), user.is_active),
            (1, "alice", true)
        );
        assert_eq!(store.hash_of("alice").as_deref(), Some("hash:Secret1"));
    }

    #[test]
    fn a_taken_username_is_a_400_naming_it() {
        let store = MemoryStore::default();
        let identity = FakeIdentity::default();
        let service = service(&store, &identity);
        service.register(&new_user("alice", "Secret1")).unwrap();
        let error = service.register(&new_user("alice", "Other12")).unwrap_err();
        assert_eq!(error, UserError::UsernameTaken("alice".into()));
        assert_eq!(error.status(), 400);
        assert_eq!(error.to_string(), "Username 'alice' is already registered");
        assert_eq!(store.count(), 1);
        assert_eq!(store.hash_of("alice").as_deref(), Some("hash:Secret1"));
    }

    #[test]
    fn a_concurrent_registration_is_caught_by_the_unique_constraint() {
        let store = MemoryStore::default();
        store.0.borrow_mut().concurrent_insert = Some("bob".into());
        let identity = FakeIdentity::default();
        let error = service(&store, &identity)
            .register(&new_user("bob", "Secret1"))
            .unwrap_err();
        assert_eq!(error, UserError::UsernameTaken("bob".into()));
        // No pre-check: registration never reads by username.
        assert_eq!(store.0.borrow().find_by_username_calls, 0);
        assert_eq!(store.count(), 1);
    }

    #[test]
    fn usernames_are_case_sensitive() {
        let store = MemoryStore::default();
        let identity = FakeIdentity::default();
        let service = service(&store, &identity);
        service.register(&new_user("alice", "Secret1")).unwrap();
        assert!(service.register(&new_user("Alice", "Secret1")).is_ok());
    }

    // ---------- login ----------

    #[test]
    fn login_issues_a_bearer_token_for_the_user() {
        let store = MemoryStore::default();
        let alice = store.add("alice", "Secret1", true);
        let identity = FakeIdentity::default();
        let token = service(&store, &identity)
            .login(&credentials("alice", "Secret1"))
            .unwrap();
        assert_eq!(
            token,
            AccessToken::bearer(FakeIdentity::token("alice", alice.id))
        );
        assert_eq!(token.token_type, "bearer");
    }

    #[test]
    fn wrong_password_and_unknown_user_are_the_same_401() {
        let store = MemoryStore::default();
        store.add("alice", "Secret1", true);
        let identity = FakeIdentity::default();
        let service = service(&store, &identity);
        let wrong = service.login(&credentials("alice", "Secret2")).unwrap_err();
        let unknown = service
            .login(&credentials("nobody", "Secret1"))
            .unwrap_err();
        assert_eq!(wrong, UserError::InvalidCredentials);
        assert_eq!(unknown, UserError::InvalidCredentials);
        assert_eq!(wrong.status(), 401);
        assert_eq!(wrong.to_string(), "Incorrect username or password");
        assert!(wrong.is_unauthorized());
        // The unknown user still cost one bcrypt job, as the wrong password did.
        assert_eq!(
            identity.verifications(),
            vec!["hash:Secret1".to_string(), "hashed:Secret1".to_string()]
        );
        // Usernames are matched exactly.
        assert_eq!(
            service.login(&credentials("ALICE", "Secret1")),
            Err(UserError::InvalidCredentials)
        );
    }

    #[test]
    fn an_inactive_user_cannot_log_in() {
        let store = MemoryStore::default();
        store.add("carol", "Secret1", false);
        let identity = FakeIdentity::default();
        let service = service(&store, &identity);
        let error = service.login(&credentials("carol", "Secret1")).unwrap_err();
        assert_eq!(error, UserError::InactiveUser);
        assert_eq!(error.status(), 401);
        assert_eq!(error.to_string(), "Inactive user");
        // Without the password nobody learns that the user is inactive.
        assert_eq!(
            service.login(&credentials("carol", "nope")),
            Err(UserError::InvalidCredentials)
        );
    }

    // ---------- token validation ----------

    #[test]
    fn a_valid_token_names_its_user() {
        let store = MemoryStore::default();
        let identity = FakeIdentity::default();
        let service = service(&store, &identity);
        let alice = service.register(&new_user("alice", "Secret1")).unwrap();
        let token = service.login(&credentials("alice", "Secret1")).unwrap();
        assert_eq!(
            service.validate_token(&token.access_token),
            Ok(TokenValidation::valid(&alice))
        );
    }

    #[test]
    fn bad_tokens_are_valid_false() {
        let store = MemoryStore::default();
        store.add("alice", "Secret1", true);
        let identity = FakeIdentity::default();
        let service = service(&store, &identity);
        let check = |token: &str, reason| {
            assert_eq!(
                service.validate_token(token),
                Ok(TokenValidation::invalid(reason)),
                "{token}"
            );
        };
        check("expired:token:alice:1", InvalidToken::Expired);
        check("garbage", InvalidToken::Malformed);
        check("", InvalidToken::Malformed);
        check(
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.",
            InvalidToken::Malformed,
        );
        // Signed for a user id that never existed, or for another user's name.
        check("token:alice:99", InvalidToken::UserNotFound);
        check("token:mallory:1", InvalidToken::UserNotFound);
    }

    #[test]
    fn tokens_of_deleted_or_deactivated_users_are_valid_false() {
        let store = MemoryStore::default();
        let identity = FakeIdentity::default();
        let service = service(&store, &identity);
        let alice = store.add("alice", "Secret1", true);
        let bob = store.add("bob", "Secret1", true);
        let alice_token = service.login(&credentials("alice", "Secret1")).unwrap();
        let bob_token = service.login(&credentials("bob", "Secret1")).unwrap();

        store.delete(alice.id);
        let answer = service.validate_token(&alice_token.access_token).unwrap();
        assert_eq!(answer, TokenValidation::invalid(InvalidToken::UserNotFound));
        assert_eq!((answer.username, answer.user_id), (None, None));

        store.deactivate(bob.id);
        assert_eq!(
            service.validate_token(&bob_token.access_token),
            Ok(TokenValidation::invalid(InvalidToken::UserInactive))
        );
    }

    #[test]
    fn validation_fails_with_the_database() {
        let store = MemoryStore::default();
        store.add("alice", "Secret1", true);
        store.0.borrow_mut().down = true;
        let identity = FakeIdentity::default();
        let error = service(&store, &identity)
            .validate_token(&FakeIdentity::token("alice", 1))
            .unwrap_err();
        assert_eq!(error.status(), 503);
        // A token that does not decode needs no database.
        assert_eq!(
            service(&store, &identity).validate_token("garbage"),
            Ok(TokenValidation::invalid(InvalidToken::Malformed))
        );
    }

    // ---------- current user ----------

    #[test]
    fn current_user_is_read_by_id() {
        let store = MemoryStore::default();
        let identity = FakeIdentity::default();
        let service = service(&store, &identity);
        let alice = store.add("alice", "Secret1", true);
        assert_eq!(service.current_user(alice.id), Ok(alice.clone()));
        store.deactivate(alice.id);
        assert_eq!(
            service.current_user(alice.id),
            Err(UserError::CredentialsRejected)
        );
        store.delete(alice.id);
        let error = service.current_user(alice.id).unwrap_err();
        assert_eq!(error, UserError::CredentialsRejected);
        assert_eq!(error.status(), 401);
        assert_eq!(error.to_string(), "Could not validate credentials");
    }

    // ---------- errors ----------

    #[test]
    fn database_errors_propagate() {
        let store = MemoryStore::default();
        store.add("alice", "Secret1", true);
        store.0.borrow_mut().down = true;
        let identity = FakeIdentity::default();
        let service = service(&store, &identity);
        let down = UserError::Store(StoreError::Unavailable("connection refused".into()));
        assert_eq!(
            service.register(&new_user("bob", "Secret1")),
            Err(down.clone())
        );
        assert_eq!(
            service.login(&credentials("alice", "Secret1")),
            Err(down.clone())
        );
        assert_eq!(service.current_user(1), Err(down));

        store.0.borrow_mut().down = false;
        store.0.borrow_mut().broken = true;
        let error = service.register(&new_user("bob", "Secret1")).unwrap_err();
        assert_eq!(error.status(), 500);
        assert_eq!(error.to_string(), "Internal Server Error");
    }

    #[test]
    fn errors_map_to_statuses_and_details() {
        let cases = [
            (
                UserError::UsernameTaken("al".into()),
                400,
                "Username 'al' is already registered",
            ),
            (
                UserError::InvalidCredentials,
                401,
                "Incorrect username or password",
            ),
            (UserError::InactiveUser, 401, "Inactive user"),
            (
                UserError::CredentialsRejected,
                401,
                "Could not validate credentials",
            ),
            (
                UserError::Store(StoreError::Unavailable("tcp refused".into())),
                503,
                "Database unavailable",
            ),
            (
                UserError::Store(StoreError::Internal("syntax error".into())),
                500,
                "Internal Server Error",
            ),
        ];
        for (error, status, detail) in cases {
            assert_eq!(error.status(), status);
            assert_eq!(error.to_string(), detail);
            assert_eq!(error.is_unauthorized(), status == 401);
        }
    }
}
