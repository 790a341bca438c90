//! Logging that goes to the host's `tracing` output inside the component and to stderr in
//! native unit tests (where the logging capability does not exist).

#[cfg(target_arch = "wasm32")]
pub use platform_guest::{log_info as info, log_warn as warn};

#[cfg(not(target_arch = "wasm32"))]
pub fn info(message: &str) {
    eprintln!("INFO {message}");
}

#[cfg(not(target_arch = "wasm32"))]
pub fn warn(message: &str) {
    eprintln!("WARN {message}");
}
