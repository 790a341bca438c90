//! All SQL of the user service, over the host's database capability.
//!
//! Every operation is a single parameterised statement. A taken username is reported by
//! the `users_username_key` UNIQUE constraint of `migrations/user/postgres/0001_init.sql`
//! (a unique index of that name in `migrations/user/sqlite/`).

use crate::model::{StoredUser, User};
use crate::service::{InsertError, StoreError, UserStore};
use platform_guest::database::{self, DatabaseError, Rows, Value};
use platform_guest::db::{first, ColumnError, Row};

/// The columns of a [`User`], in field order (never the hash).
const USER_COLUMNS: &str = "id, username, is_active, created_at, updated_at";

/// The UNIQUE constraint on `users.username`.
pub const USERNAME_CONSTRAINT: &str = "users_username_key";

/// The users table in the service's own database.
pub struct Repository;

/// An INSERT's error: the username constraint means the name is taken; anything else
/// (including another unique constraint) is a store error.
pub fn insert_error(error: DatabaseError) -> InsertError {
    match error {
        DatabaseError::UniqueViolation(name) if name == USERNAME_CONSTRAINT => {
            InsertError::UsernameTaken
        }
        other => InsertError::Store(other.into()),
    }
}

fn user(row: &Row<'_>) -> Result<User, ColumnError> {
    Ok(User {
        id: row.int("id")?,
        username: row.text("username")?,
        is_active: row.boolean("is_active")?,
        created_at: row.timestamp("created_at")?,
        updated_at: row.timestamp("updated_at")?,
    })
}

fn stored_user(row: &Row<'_>) -> Result<StoredUser, ColumnError> {
    Ok(StoredUser {
        user: user(row)?,
        hashed_password: row.text("hashed_password")?,
    })
}

fn one<T>(
    result: &Rows,
    read: fn(&Row<'_>) -> Result<T, ColumnError>,
) -> Result<Option<T>, StoreError> {
    Ok(first(result).map(|row| read(&row)).transpose()?)
}

impl UserStore for Repository {
    fn insert(&self, username: &str, hashed_password: &str) -> Result<User, InsertError> {
        let result = database::query(
            &format!(
                "INSERT INTO users (username, hashed_password) VALUES ($1, $2) \
                 RETURNING {USER_COLUMNS}"
            ),
            &[
                Value::Text(username.to_string()),
                Value::Text(hashed_password.to_string()),
            ],
        )
        .map_err(insert_error)?;
        one(&result, user)?
            .ok_or_else(|| StoreError::Internal("INSERT returned no row".into()).into())
    }

    fn find_by_username(&self, username: &str) -> Result<Option<StoredUser>, StoreError> {
        let result = database::query(
            &format!("SELECT {USER_COLUMNS}, hashed_password FROM users WHERE username = $1"),
            &[Value::Text(username.to_string())],
        )?;
        one(&result, stored_user)
    }

    fn find_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        let result = database::query(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
            &[Value::Int(id)],
        )?;
        one(&result, user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(columns: &str, values: Vec<Vec<Value>>) -> Rows {
        Rows {
            columns: columns.split(", ").map(str::to_string).collect(),
            values,
        }
    }

    fn row(is_active: Value) -> Vec<Value> {
        vec![
            Value::Int(3),
            Value::Text("alice".into()),
            is_active,
            Value::Timestamp("2026-11-25T10:00:00.123456Z".into()),
            Value::Timestamp("2026-11-25T10:00:01Z".into()),
        ]
    }

    #[test]
    fn reads_a_user_row() {
        let alice = one(
            &rows_of(USER_COLUMNS, vec![row(Value::Boolean(true))]),
            user,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            alice,
            User {
                id: 3,
                username: "alice".into(),
                is_active: true,
                created_at: "2026-11-25T10:00:00.123456Z".into(),
                updated_at: "2026-11-25T10:00:01Z".into(),
            }
        );
        assert_eq!(one(&rows_of(USER_COLUMNS, Vec::new()), user).unwrap(), None);
    }

    #[test]
    fn reads_a_stored_user_row_with_its_hash() {
        let mut values = row(Value::Boolean(false));
        values.push(Value::Text("$2b$12$hash".into()));
        let columns = format!("{USER_COLUMNS}, hashed_password");
        let stored = one(&rows_of(&columns, vec![values]), stored_user)
            .unwrap()
            .unwrap();
        assert!(!stored.user.is_active);
        assert_eq!(stored.hashed_password, "$2b$12$hash");
    }

    #[test]
    fn a_wrong_row_shape_is_internal() {
        let bad = row(Value::Text("yes".into()));
        assert!(matches!(
            one(&rows_of(USER_COLUMNS, vec![bad]), user),
            Err(StoreError::Internal(_))
        ));
        // The stored user needs the hash column.
        assert!(matches!(
            one(
                &rows_of(USER_COLUMNS, vec![row(Value::Boolean(true))]),
                stored_user
            ),
            Err(StoreError::Internal(_))
        ));
    }

    #[test]
    fn only_the_username_constraint_means_taken() {
        assert_eq!(
            insert_error(DatabaseError::UniqueViolation(USERNAME_CONSTRAINT.into())),
            InsertError::UsernameTaken
        );
        assert!(matches!(
            insert_error(DatabaseError::UniqueViolation("users_pkey".into())),
            InsertError::Store(StoreError::Internal(_))
        ));
        assert_eq!(
            insert_error(DatabaseError::Unavailable("down".into())),
            InsertError::Store(StoreError::Unavailable("down".into()))
        );
        assert!(matches!(
            insert_error(DatabaseError::CheckViolation("users_username_check".into())),
            InsertError::Store(StoreError::Internal(_))
        ));
    }

    #[test]
    fn the_migration_names_the_username_constraint() {
        let postgres = include_str!("../../../migrations/user/postgres/0001_init.sql");
        assert!(postgres.contains(&format!(
            "CONSTRAINT {USERNAME_CONSTRAINT} UNIQUE (username)"
        )));
        let sqlite = include_str!("../../../migrations/user/sqlite/0001_init.sql");
        assert!(sqlite.contains(&format!(
            "CREATE UNIQUE INDEX {USERNAME_CONSTRAINT} ON users (username)"
        )));
    }

    #[test]
    fn database_errors_map_to_store_errors() {
        assert_eq!(
            StoreError::from(DatabaseError::Unavailable("down".into())),
            StoreError::Unavailable("down".into())
        );
        for error in [
            DatabaseError::QueryFailed("syntax".into()),
            DatabaseError::InvalidState("committed".into()),
            DatabaseError::ForeignKeyViolation("fk".into()),
        ] {
            assert!(matches!(StoreError::from(error), StoreError::Internal(_)));
        }
    }
}
