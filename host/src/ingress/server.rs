//! The accept loop every listener of the host shares (the service ports and the admin
//! API): HTTP/1.1 connections under the listener's [`ConnectionLimits`], and a
//! graceful shutdown: idle connections close at once, requests in progress get the drain
//! deadline.
//!
//! A connection must send its request head within the header timeout (a slow or stalled
//! client cannot hold a socket), heads are bounded in bytes and header count (431), and
//! past `max_connections` a new connection is answered 503 and closed without reading a
//! byte of it: refused fast, never left hanging.

use crate::config::ConnectionLimits;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub type HttpResponse = http::Response<Full<Bytes>>;

/// What a listener does with each request.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: http::Request<Incoming>)
        -> impl Future<Output = HttpResponse> + Send;
}

/// Pause after a failed accept (out of file descriptors and the like): back off instead
/// of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What a connection over the limit reads before it is closed.
const OVER_CAPACITY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 46\r\n\r\n\
{\"detail\":\"Too many connections, retry later\"}";
/// At shutdown, how long a connection without a request in flight may take to close.
const IDLE_CLOSE: Duration = Duration::from_millis(100);
/// Longest the refusal may take to write to a client that does not read.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Accepts connections on `listener` under `limits` until `shutdown` fires, then waits for
/// the connections to finish the requests they are serving (at most the drain deadline).
/// `name` tags the log records.
pub async fn serve<H: Handler>(
    name: String,
    handler: Arc<H>,
    listener: TcpListener,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let builder = Arc::new(connection_builder(&limits));
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let drain = Duration::from_secs(limits.shutdown_drain_seconds);
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        let (stream, _) = match accepted {
            Ok(connection) => connection,
            Err(error) => {
                tracing::warn!(listener = %name, %error, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            connections.spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (handler, builder, shutdown) = (handler.clone(), builder.clone(), shutdown.clone());
        connections.spawn(async move {
            let in_flight = Arc::new(AtomicUsize::new(0));
            let counted = in_flight.clone();
            let service = hyper::service::service_fn(move |request| {
                let (handler, counted) = (handler.clone(), counted.clone());
                async move {
                    counted.fetch_add(1, Ordering::Relaxed);
                    let response = handler.handle(request).await;
                    counted.fetch_sub(1, Ordering::Relaxed);
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    // A connection serving a request gets the drain deadline; one that is
                    // idle or half way through sending a head only the time to write out
                    // what it was answered.
                    let deadline = if in_flight.load(Ordering::Relaxed) > 0 {
                        drain
                    } else {
                        IDLE_CLOSE
                    };
                    let _ = tokio::time::timeout(deadline, connection).await;
                }
            }
            drop(slot);
        });
    }
    connections.close();
    connections.wait().await;
}

/// HTTP/1 with the limits of `limits` (the listeners speak HTTP/1.1 only).
fn connection_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_timeout_seconds))
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    builder
}

/// Answers a connection over the limit with 503 and closes it, reading nothing.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        stream.write_all(OVER_CAPACITY).await?;
        stream.shutdown().await
    })
    .await;
}

/// A JSON response.
pub fn json_response<T: serde::Serialize>(status: http::StatusCode, body: &T) -> HttpResponse {
    let mut response = http::Response::new(Full::new(Bytes::from(
        serde_json::to_vec(body).expect("JSON of plain data"),
    )));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
