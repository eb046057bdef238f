//! The `Transport` over the SDK's HTTP client.
//!
//! Kept thin on purpose: one GET, its status and three headers, and the body
//! stream. Natively (unit tests) the SDK sends requests to its fake host.

use std::time::Duration;

use cairn_sdk::http::Request;

use super::fetch::{Response, Transport, TransportError};
use super::url::HttpUrl;

pub(crate) struct SdkHttp;

impl Transport for SdkHttp {
    fn get(
        &mut self,
        url: &HttpUrl,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<Response, TransportError> {
        let mut request = Request::get(url.to_url()).timeout(timeout);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().map_err(|err| TransportError {
            retryable: err.retryable(),
            message: err.message,
        })?;
        Ok(Response {
            status: response.status,
            location: response.header("location").map(str::to_string),
            content_range: response.header("content-range").map(str::to_string),
            content_length: response.content_length(),
            body: Box::new(response.body),
        })
    }
}

#[cfg(test)]
mod tests {
    use cairn_sdk::http::HttpErrorKind;
    use cairn_sdk::testing::{FakeHost, response};

    use super::*;

    #[test]
    fn requests_carry_the_headers_and_responses_the_range() {
        let host = FakeHost::reset();
        host.on_http(|request| {
            assert_eq!(request.header_value("range"), Some("bytes=4-"));
            Ok(response(206, &[("Content-Range", "bytes 4-5/6")], "ef"))
        });
        let url = HttpUrl::parse("http://127.0.0.1:9/a.tar").unwrap();
        let headers = [("range".to_string(), "bytes=4-".to_string())];
        let mut got = SdkHttp.get(&url, &headers, Duration::from_secs(1)).unwrap();
        assert_eq!(got.status, 206);
        assert_eq!(got.content_range.as_deref(), Some("bytes 4-5/6"));
        let mut body = String::new();
        std::io::Read::read_to_string(&mut got.body, &mut body).unwrap();
        assert_eq!(body, "ef");
        assert_eq!(host.requests()[0].url, "http://127.0.0.1:9/a.tar");
        assert_eq!(
            host.requests()[0].timeouts.between_bytes,
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn refusals_are_final_and_connection_trouble_is_retried() {
        let host = FakeHost::reset();
        let url = HttpUrl::parse("http://127.0.0.1:9/a.tar").unwrap();
        let Err(refused) = SdkHttp.get(&url, &[], Duration::from_secs(1)) else {
            panic!("the fake host has no handler");
        };
        assert!(!refused.retryable);
        host.on_http(|_| {
            Err(cairn_sdk::http::HttpError::new(
                HttpErrorKind::Connect,
                "connection refused",
            ))
        });
        let Err(refused) = SdkHttp.get(&url, &[], Duration::from_secs(1)) else {
            panic!("the handler fails");
        };
        assert!(refused.retryable);
    }
}
