//! The host's HTTP listener: accepts connections (hyper, HTTP/1.1), bounds
//! headers, bodies and time, and hands each request to the plugin whose granted
//! route prefix is the longest match. Several plugins share one listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::contract::{HttpFailure, HttpHandler};

/// Limits of one listener.
#[derive(Clone)]
pub struct ListenerSettings {
    pub address: SocketAddr,
    /// Largest request head (request line and headers) accepted.
    pub max_header_bytes: usize,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Time allowed for a client to send the request head.
    pub header_timeout: Duration,
    /// Time allowed from the end of the head to the response head.
    pub request_timeout: Duration,
    /// TLS (and, with a client CA, mutual TLS); plain HTTP when `None`.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Finds the handler of a request path: `(plugin, instances)`.
pub type Router = Arc<dyn Fn(&str) -> Option<(String, Arc<dyn HttpHandler>)> + Send + Sync>;

/// Binds the listener; fails at once (before the daemon reports ready) when the
/// address is taken.
pub async fn bind(settings: &ListenerSettings) -> std::io::Result<TcpListener> {
    TcpListener::bind(settings.address).await
}

/// Serves connections on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, settings: ListenerSettings, router: Router) {
    let settings = Arc::new(settings);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, say: back off instead of spinning.
                tracing::warn!("HTTP accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let settings = settings.clone();
        let router = router.clone();
        tokio::spawn(async move {
            match settings.tls.clone() {
                None => serve_connection(TokioIo::new(stream), settings, router, peer, false).await,
                Some(acceptor) => {
                    // The handshake gets the same bound as the request head.
                    let handshake =
                        tokio::time::timeout(settings.header_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => {
                            serve_connection(TokioIo::new(tls), settings, router, peer, true).await
                        }
                        Ok(Err(err)) => tracing::debug!(%peer, "TLS handshake failed: {err}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_connection<I>(
    io: TokioIo<I>,
    settings: Arc<ListenerSettings>,
    router: Router,
    peer: SocketAddr,
    https: bool,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (header_timeout, max_buf) = (settings.header_timeout, settings.max_header_bytes.max(8192));
    let service = hyper::service::service_fn(move |request| {
        let settings = settings.clone();
        let router = router.clone();
        async move {
            Ok::<_, std::convert::Infallible>(respond(request, &settings, &router, https).await)
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(max_buf)
        .serve_connection(io, service)
        .await;
    if let Err(err) = served {
        tracing::debug!(%peer, "HTTP connection ended: {err}");
    }
}

async fn respond(
    request: Request<Incoming>,
    settings: &ListenerSettings,
    router: &Router,
    https: bool,
) -> Response<HyperOutgoingBody> {
    let path = request.uri().path().to_string();
    let Some((plugin, instances)) = router(&path) else {
        return error(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no plugin serves {path}"),
        );
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > settings.max_body_bytes as u64) {
        return too_large(settings);
    }
    let (mut parts, body) = request.into_parts();
    let body = match Limited::new(body, settings.max_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => return too_large(settings),
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad-request",
                format!("reading the body failed: {err}"),
            );
        }
    };
    if !parts.headers.contains_key(header::HOST)
        && let Ok(host) = settings.address.to_string().parse()
    {
        // HTTP/1.0 clients may omit it; wasi:http requires an authority.
        parts.headers.insert(header::HOST, host);
    }
    let request = Request::from_parts(parts, Full::new(body));
    match tokio::time::timeout(
        settings.request_timeout,
        instances.clone().handle(request, https),
    )
    .await
    {
        Ok(Ok(response)) => response,
        Ok(Err(failure)) => {
            tracing::warn!(%plugin, %path, "HTTP request failed: {failure}");
            let (status, code) = match failure {
                HttpFailure::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                HttpFailure::Guest(_) => (StatusCode::BAD_GATEWAY, "plugin-error"),
                HttpFailure::Fault(_) | HttpFailure::NoResponse => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "plugin-fault")
                }
            };
            error(status, code, format!("{plugin}: {failure}"))
        }
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "{plugin} did not answer within {:?}",
                settings.request_timeout
            ),
        ),
    }
}

fn too_large(settings: &ListenerSettings) -> Response<HyperOutgoingBody> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!("the request body exceeds {} bytes", settings.max_body_bytes),
    )
}

/// A JSON error response with a stable code: `{"error":{"code","message"}}`.
pub fn error(status: StatusCode, code: &str, message: String) -> Response<HyperOutgoingBody> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
