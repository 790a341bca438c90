//! The order service's contract (`../shared/contract/rest-api.md`), row by row.

use crate::support::{Platform, Test};

pub fn tests() -> Vec<Test> {
    crate::tests![]
}
