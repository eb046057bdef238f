//! The `wasi:http` hooks of every instance: outgoing requests checked against
//! the plugin's `[grants.http-client]`, then sent over a connection to an
//! address that was checked.

use std::future::{Future, poll_fn};
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, pki_types::ServerName};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use super::{HttpClientGrant, pattern::default_port, refused};
use crate::caps::Grants;
use crate::contract::Audit;

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type Sent = Result<(http::Response<WasiBody>, IoFuture), Error>;

/// The `wasi:http` hooks of one instance.
pub struct Egress {
    plugin: Arc<str>,
    grants: Arc<Grants>,
    audit: Arc<Audit>,
}

impl Egress {
    pub fn new(plugin: Arc<str>, grants: Arc<Grants>, audit: Arc<Audit>) -> Egress {
        Egress {
            plugin,
            grants,
            audit,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpHooks for Egress {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _io: IoFuture,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let audit = Requester {
            plugin: self.plugin.clone(),
            audit: self.audit.clone(),
        };
        let grants = self.grants.clone();
        Box::new(async move {
            match grants.http_client.as_ref() {
                Some(grant) => send(&audit, grant, request, options).await,
                None => Err(audit.deny(
                    &request.uri().to_string(),
                    "outgoing HTTP is not granted ([grants.http-client])",
                )),
            }
        })
    }
}

/// Who is asking, for audit lines and the denial counter.
struct Requester {
    plugin: Arc<str>,
    audit: Arc<Audit>,
}

impl Requester {
    fn deny(&self, url: &str, why: &str) -> Error {
        self.audit
            .record(&self.plugin, "http-client", &format!("{why} ({url})"));
        Error::HttpRequestDenied
    }
}

async fn send(
    audit: &Requester,
    grant: &HttpClientGrant,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Sent {
    let uri = request.uri().clone();
    let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let bracketed = authority.host().to_ascii_lowercase();
    let host = bracketed
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = match authority.port_u16() {
        Some(port) => port,
        None => default_port(&scheme).ok_or(Error::HttpProtocolError)?,
    };
    let path = uri.path();
    // What the audit line shows: no user information, no query.
    let shown = match authority.port() {
        Some(port) => format!("{scheme}://{bracketed}:{port}{path}"),
        None => format!("{scheme}://{bracketed}{path}"),
    };
    if authority.as_str().contains('@') {
        return Err(audit.deny(&shown, "the URL carries user information"));
    }
    if request.method() == http::Method::CONNECT {
        return Err(audit.deny(&shown, "CONNECT (tunnelling) is not allowed"));
    }
    if grant.allowed(&scheme, &host, port, path).is_none() {
        return Err(audit.deny(&shown, "the URL matches no allow pattern"));
    }

    let limit = |guest: Option<Duration>| guest.map_or(grant.timeout, |t| t.min(grant.timeout));
    let options = options.unwrap_or_default();
    let connect_timeout = limit(options.connect_timeout);
    let first_byte_timeout = limit(options.first_byte_timeout);
    let between_bytes = limit(options.between_bytes_timeout).max(Duration::from_millis(1));

    let addresses = resolve(&host, port, connect_timeout).await?;
    for address in &addresses {
        if let Some(why) = refused(address.ip(), &grant.allow_private) {
            let detail = if address.ip().to_string() == host {
                format!("{} is a {why} address", address.ip())
            } else {
                format!("{host} resolves to {}, a {why} address", address.ip())
            };
            return Err(audit.deny(&shown, &detail));
        }
    }

    let stream = tokio::time::timeout(
        connect_timeout,
        connect(&addresses, &host, (scheme == "https").then_some(grant)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // The request line carries only the path: the authority is in `Host`.
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() =
        http::Uri::try_from(path_and_query).map_err(|_| Error::HttpRequestUriInvalid)?;

    let max = grant.max_response_size;
    let send = async move {
        let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)??;
        if let Some(max) = max {
            let declared = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > max) {
                return Err(Error::HttpResponseBodySize(declared));
            }
        }
        Ok(response.map(|incoming| {
            ResponseBody {
                incoming,
                idle: between_bytes,
                timer: Box::pin(tokio::time::sleep(between_bytes)),
                max,
                read: 0,
            }
            .boxed_unsync()
        }))
    };
    // Wait for the response head while driving the connection.
    let mut send = pin!(send);
    let mut conn = Some(conn);
    let response = poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(result),
        Poll::Pending => {
            let Some(fut) = conn.as_mut() else {
                return Poll::Pending;
            };
            let done = ready!(Pin::new(fut).poll(cx));
            conn = None;
            match done {
                Ok(()) => send.as_mut().poll(cx),
                Err(err) => Poll::Ready(Err(Error::from(err))),
            }
        }
    })
    .await?;
    let io: IoFuture = Box::new(async move {
        match conn {
            Some(conn) => conn.await.map_err(|err| {
                if err.is_timeout() {
                    Error::HttpResponseTimeout
                } else {
                    Error::from(err)
                }
            }),
            None => Ok(()),
        }
    });
    Ok((response, io))
}

/// Every address of `host` (an IP literal resolves to itself).
async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, Error> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| Error::DnsTimeout)?
        .map_err(|err| Error::DnsError {
            rcode: Some(err.to_string()),
            info_code: None,
        })?;
    let mut addresses: Vec<SocketAddr> = Vec::new();
    for address in found {
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    if addresses.is_empty() {
        return Err(Error::DestinationNotFound);
    }
    Ok(addresses)
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Connects to the first of the (checked) addresses that answers, with TLS
/// for `https` verified against `host`.
/// Connects to the first reachable address; over TLS (with the grant's trust) when
/// `tls` is given.
async fn connect(
    addresses: &[SocketAddr],
    host: &str,
    tls: Option<&HttpClientGrant>,
) -> Result<Box<dyn Stream>, Error> {
    let mut last = None;
    let mut tcp = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                // A request goes out in several writes (head, body, TLS
                // records); with Nagle's algorithm each later one waits for
                // the peer's delayed ACK, ~40 ms a request.
                let _ = stream.set_nodelay(true);
                tcp = Some(stream);
                break;
            }
            Err(err) => last = Some(err),
        }
    }
    let tcp = match (tcp, last) {
        (Some(tcp), _) => tcp,
        (None, Some(err)) => return Err(Error::Connect(err)),
        (None, None) => return Err(Error::DestinationNotFound),
    };
    let Some(grant) = tls else {
        return Ok(Box::new(tcp));
    };
    let name = ServerName::try_from(host)
        .map(|name| name.to_owned())
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let connector = tokio_rustls::TlsConnector::from(tls_config(grant)?);
    let stream = connector.connect(name, tcp).await.map_err(Error::Tls)?;
    Ok(Box::new(stream))
}

/// The Mozilla roots (webpki-roots, so devices need no system CA store), plus the
/// grant's `ca-file` when it has one. Built once per daemon, and once per grant
/// with a CA.
fn tls_config(grant: &HttpClientGrant) -> Result<Arc<ClientConfig>, Error> {
    static PUBLIC: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let Some(ca_file) = &grant.ca_file else {
        return PUBLIC
            .get_or_init(|| client_config(None))
            .clone()
            .map_err(|err| Error::InternalError(Some(err)));
    };
    if let Some(config) = grant.tls.get() {
        return Ok(config.clone());
    }
    let config = client_config(Some(ca_file)).map_err(|err| Error::InternalError(Some(err)))?;
    Ok(grant.tls.get_or_init(|| config).clone())
}

fn client_config(ca_file: Option<&std::path::Path>) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    if let Some(path) = ca_file {
        let certs =
            crate::caps::pem::read_certs(path).map_err(|err| format!("ca-file: {err:#}"))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|err| format!("ca-file {}: {err}", path.display()))?;
        }
    }
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| Arc::new(builder.with_root_certificates(roots).with_no_client_auth()))
        .map_err(|err| format!("TLS setup: {err}"))
}

/// The response body as the guest reads it: bounded in size and in the time
/// between chunks.
struct ResponseBody {
    incoming: hyper::body::Incoming,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    max: Option<u64>,
    read: u64,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(err))) if err.is_timeout() => {
                Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(Error::from(err)))),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read = this.read.saturating_add(data.len() as u64);
                    if this.max.is_some_and(|max| this.read > max) {
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(this.max))));
                    }
                }
                let next = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(this.timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}
