//! The accept loop every listener of the host shares (the service ports and the admin
//! API): HTTP/1 and HTTP/2 connections, and a graceful shutdown that lets each connection
//! finish the request it is serving.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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

/// Accepts connections on `listener` until `shutdown` fires, then waits for the
/// connections to finish the requests they are serving. `name` tags the log records.
pub async fn serve<H: Handler>(
    name: String,
    handler: Arc<H>,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
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
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let handler = handler.clone();
                async move { Ok::<_, std::convert::Infallible>(handler.handle(request).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
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
