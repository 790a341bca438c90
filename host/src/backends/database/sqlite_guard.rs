//! What keeps a component inside its own SQLite file: installed on every connection of
//! the embedded database backend, before any of its SQL runs.
//!
//! - An authorizer denies `ATTACH` / `DETACH` (another service's file, or a new one),
//!   `load_extension()`, and every PRAGMA but the read-only schema introspection the host
//!   and migrations use; no database may be attached at all, which stops `VACUUM INTO
//!   '<path>'` as well. Defensive mode keeps the schema from being corrupted on purpose.
//! - A statement that runs longer than the statement timeout is interrupted.

use libsqlite3_sys as ffi;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `SQLITE_DBCONFIG_DEFENSIVE` and `SQLITE_DBCONFIG_TRUSTED_SCHEMA` (sqlite3.h).
const DBCONFIG_DEFENSIVE: c_int = 1010;
const DBCONFIG_TRUSTED_SCHEMA: c_int = 1017;
/// Virtual machine steps between two looks at the statement's clock.
const STEPS_PER_CHECK: c_int = 10_000;

/// PRAGMAs a statement may use: they only read the schema, whatever their argument.
const READ_ONLY_PRAGMAS: [&str; 7] = [
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
];

/// The error SQLite reports for a statement interrupted by the statement timeout.
pub const INTERRUPTED: &str = "9";

/// When the statement running on one connection started, for the progress handler.
struct StatementClock {
    epoch: Instant,
    /// Milliseconds since `epoch` when the current statement started.
    started_ms: AtomicU64,
    timeout_ms: u64,
}

/// Installs the guard on a fresh connection.
///
/// # Safety
/// `connection` must be an open handle that no other thread uses during the call (sqlx
/// lends it under its lock in `after_connect`).
pub unsafe fn install(
    connection: *mut ffi::sqlite3,
    statement_timeout: Duration,
) -> Result<(), sqlx::Error> {
    let check = |what: &str, code: c_int| {
        if code == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(sqlx::Error::Protocol(format!(
                "{what} failed with SQLite code {code}"
            )))
        }
    };
    let clock = Box::into_raw(Box::new(StatementClock {
        epoch: Instant::now(),
        started_ms: AtomicU64::new(0),
        timeout_ms: statement_timeout.as_millis().max(1) as u64,
    }));
    // SAFETY (for the calls below): `connection` is open and ours for the call; the
    // callbacks match SQLite's signatures; `clock` lives until SQLITE_TRACE_CLOSE frees it.
    unsafe {
        ffi::sqlite3_limit(connection, ffi::SQLITE_LIMIT_ATTACHED, 0);
        check(
            "defensive mode",
            ffi::sqlite3_db_config(
                connection,
                DBCONFIG_DEFENSIVE,
                1 as c_int,
                std::ptr::null_mut::<c_int>(),
            ),
        )?;
        check(
            "untrusted schema",
            ffi::sqlite3_db_config(
                connection,
                DBCONFIG_TRUSTED_SCHEMA,
                0 as c_int,
                std::ptr::null_mut::<c_int>(),
            ),
        )?;
        check(
            "the authorizer",
            ffi::sqlite3_set_authorizer(connection, Some(authorize), std::ptr::null_mut()),
        )?;
        check(
            "the statement clock",
            ffi::sqlite3_trace_v2(
                connection,
                (ffi::SQLITE_TRACE_STMT | ffi::SQLITE_TRACE_CLOSE) as c_uint,
                Some(trace),
                clock.cast(),
            ),
        )?;
        ffi::sqlite3_progress_handler(connection, STEPS_PER_CHECK, Some(progress), clock.cast());
    }
    Ok(())
}

fn text<'a>(pointer: *const c_char) -> Option<&'a str> {
    if pointer.is_null() {
        return None;
    }
    // SAFETY: SQLite passes NUL-terminated strings that live for the callback.
    unsafe { CStr::from_ptr(pointer) }.to_str().ok()
}

unsafe extern "C" fn authorize(
    _: *mut c_void,
    action: c_int,
    first: *const c_char,
    second: *const c_char,
    _database: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    let allowed = match action {
        ffi::SQLITE_ATTACH | ffi::SQLITE_DETACH => false,
        ffi::SQLITE_PRAGMA => text(first).is_some_and(|name| {
            READ_ONLY_PRAGMAS
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(name))
        }),
        ffi::SQLITE_FUNCTION => {
            !text(second).is_some_and(|name| name.eq_ignore_ascii_case("load_extension"))
        }
        _ => true,
    };
    if allowed {
        ffi::SQLITE_OK
    } else {
        ffi::SQLITE_DENY
    }
}

unsafe extern "C" fn trace(
    kind: c_uint,
    context: *mut c_void,
    _: *mut c_void,
    _: *mut c_void,
) -> c_int {
    let clock = context.cast::<StatementClock>();
    if kind == ffi::SQLITE_TRACE_CLOSE as c_uint {
        // SAFETY: the connection is closing; nothing calls back with `clock` after this.
        drop(unsafe { Box::from_raw(clock) });
    } else if kind == ffi::SQLITE_TRACE_STMT as c_uint {
        // SAFETY: `clock` is alive while the connection is open.
        let clock = unsafe { &*clock };
        let now = clock.epoch.elapsed().as_millis() as u64;
        clock.started_ms.store(now, Ordering::Relaxed);
    }
    0
}

unsafe extern "C" fn progress(context: *mut c_void) -> c_int {
    // SAFETY: `clock` is alive while the connection is open.
    let clock = unsafe { &*context.cast::<StatementClock>() };
    let now = clock.epoch.elapsed().as_millis() as u64;
    let running = now.saturating_sub(clock.started_ms.load(Ordering::Relaxed));
    c_int::from(running > clock.timeout_ms)
}
