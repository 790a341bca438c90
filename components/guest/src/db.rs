//! Typed access to the rows the database capability returns.

use crate::database::{DatabaseError, Rows, Value};

/// One row with its column names, read by column name.
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

/// A column that is absent or holds another type than the caller asked for: a bug in the
/// component's SQL, reported as a 500.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnError(pub String);

impl std::fmt::Display for ColumnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ColumnError {}

/// A failed database call, as far as a service's rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The database is unreachable: 503 over HTTP, a retry for a message.
    Unavailable(String),
    /// Anything else (a bad statement, an unexpected column...): 500, the cause only in the log.
    Internal(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(cause) => write!(f, "database unavailable: {cause}"),
            StoreError::Internal(cause) => write!(f, "database error: {cause}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<DatabaseError> for StoreError {
    fn from(error: DatabaseError) -> Self {
        match error {
            DatabaseError::Unavailable(cause) => StoreError::Unavailable(cause),
            other => StoreError::Internal(format!("{other:?}")),
        }
    }
}

impl From<ColumnError> for StoreError {
    fn from(error: ColumnError) -> Self {
        StoreError::Internal(format!("unexpected row: {error}"))
    }
}

/// Iterates the rows of a result.
pub fn rows(result: &Rows) -> impl Iterator<Item = Row<'_>> {
    result.values.iter().map(|values| Row {
        columns: &result.columns,
        values,
    })
}

/// The first row of a result, if any.
pub fn first(result: &Rows) -> Option<Row<'_>> {
    rows(result).next()
}

impl Row<'_> {
    fn value(&self, column: &str) -> Result<&Value, ColumnError> {
        self.columns
            .iter()
            .position(|name| name == column)
            .map(|index| &self.values[index])
            .ok_or_else(|| ColumnError(format!("no column `{column}`")))
    }

    fn mismatch(column: &str, wanted: &str) -> ColumnError {
        ColumnError(format!("column `{column}` is not {wanted}"))
    }

    pub fn int(&self, column: &str) -> Result<i64, ColumnError> {
        match self.value(column)? {
            Value::Int(value) => Ok(*value),
            _ => Err(Self::mismatch(column, "an integer")),
        }
    }

    pub fn text(&self, column: &str) -> Result<String, ColumnError> {
        match self.value(column)? {
            Value::Text(value) | Value::Uuid(value) | Value::Numeric(value) => Ok(value.clone()),
            _ => Err(Self::mismatch(column, "text")),
        }
    }

    pub fn optional_text(&self, column: &str) -> Result<Option<String>, ColumnError> {
        match self.value(column)? {
            Value::Null => Ok(None),
            _ => self.text(column).map(Some),
        }
    }

    pub fn boolean(&self, column: &str) -> Result<bool, ColumnError> {
        match self.value(column)? {
            Value::Boolean(value) => Ok(*value),
            Value::Int(value) => Ok(*value != 0),
            _ => Err(Self::mismatch(column, "a boolean")),
        }
    }

    /// A TIMESTAMPTZ column as an RFC 3339 string in UTC.
    pub fn timestamp(&self, column: &str) -> Result<String, ColumnError> {
        match self.value(column)? {
            Value::Timestamp(value) => Ok(value.clone()),
            _ => Err(Self::mismatch(column, "a timestamp")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_database_is_unavailable() {
        assert_eq!(
            StoreError::from(DatabaseError::Unavailable("down".into())),
            StoreError::Unavailable("down".into())
        );
        for error in [
            DatabaseError::CheckViolation("products_quantity_check".into()),
            DatabaseError::UniqueViolation("users_username_key".into()),
            DatabaseError::QueryFailed("syntax".into()),
            DatabaseError::InvalidState("committed".into()),
        ] {
            assert!(matches!(StoreError::from(error), StoreError::Internal(_)));
        }
        assert!(matches!(
            StoreError::from(ColumnError("no column `x`".into())),
            StoreError::Internal(_)
        ));
    }
}
