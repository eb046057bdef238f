//! Continuing a download from a byte offset with `Range`.

use super::{HttpError, Request, Response};

/// A parsed `Content-Range: bytes START-END/TOTAL` header (`TOTAL` may be `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// The first byte in the body.
    pub start: u64,
    /// The last byte in the body (inclusive).
    pub end: u64,
    /// The size of the whole resource, when the server knows it.
    pub total: Option<u64>,
}

impl ContentRange {
    /// Parses the header value; `None` when it is not a satisfied byte range.
    pub fn parse(header: &str) -> Option<ContentRange> {
        let spec = header.trim().strip_prefix("bytes")?.trim_start();
        let (range, total) = spec.split_once('/')?;
        let (start, end) = range.split_once('-')?;
        let total = match total.trim() {
            "*" => None,
            total => Some(total.parse().ok()?),
        };
        Some(ContentRange {
            start: start.trim().parse().ok()?,
            end: end.trim().parse().ok()?,
            total,
        })
    }
}

/// How a server answered a request for the bytes from an offset on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// `206` starting at the offset: the body continues what is there.
    Continues,
    /// Any status but `206` and `416`: the server ignored the range, so a
    /// 2xx body is the whole resource from byte 0 (check the status).
    FromStart,
    /// `416`: the offset is at or past the end; what is there may be complete
    /// or belong to an older version of the resource.
    NotSatisfiable,
    /// `206` starting somewhere else (the start, when the header said one):
    /// the body cannot be appended.
    Elsewhere(Option<u64>),
}

impl Resumed {
    /// Classifies a response to `Range: bytes=FROM-` by its status and `Content-Range`.
    pub fn classify(status: u16, content_range: Option<&str>, from: u64) -> Resumed {
        match status {
            206 => match content_range.and_then(ContentRange::parse) {
                Some(range) if range.start == from => Resumed::Continues,
                Some(range) => Resumed::Elsewhere(Some(range.start)),
                // A 206 without a readable range is only trusted for a plain
                // `Range` request the server had no reason to split.
                None if content_range.is_none() => Resumed::Continues,
                None => Resumed::Elsewhere(None),
            },
            416 => Resumed::NotSatisfiable,
            _ => Resumed::FromStart,
        }
    }
}

/// Sends `request` asking only for the bytes from `from` on (no `Range` when
/// `from` is 0) and says how the server answered.
///
/// The caller appends the body on [`Resumed::Continues`], starts over on
/// [`Resumed::FromStart`] (after checking the status), and discards what it
/// has on [`Resumed::Elsewhere`] or [`Resumed::NotSatisfiable`].
pub fn resume(request: Request, from: u64) -> Result<(Response, Resumed), HttpError> {
    let request = if from > 0 {
        request.header("range", format!("bytes={from}-"))
    } else {
        request
    };
    let response = request.send()?;
    let resumed = if from > 0 {
        Resumed::classify(response.status, response.header("content-range"), from)
    } else {
        Resumed::FromStart
    };
    Ok((response, resumed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        assert_eq!(
            ContentRange::parse("bytes 10-19/20"),
            Some(ContentRange {
                start: 10,
                end: 19,
                total: Some(20)
            })
        );
        assert_eq!(
            ContentRange::parse("bytes 5-9/*").map(|r| r.total),
            Some(None)
        );
        assert_eq!(ContentRange::parse("bytes */20"), None);
        assert_eq!(ContentRange::parse("items 1-2/3"), None);
    }

    #[test]
    fn responses_to_a_range_are_classified() {
        let classify = Resumed::classify;
        assert_eq!(classify(206, Some("bytes 4-9/10"), 4), Resumed::Continues);
        assert_eq!(
            classify(206, Some("bytes 0-9/10"), 4),
            Resumed::Elsewhere(Some(0))
        );
        assert_eq!(classify(206, Some("junk"), 4), Resumed::Elsewhere(None));
        assert_eq!(classify(200, None, 4), Resumed::FromStart);
        assert_eq!(classify(503, None, 4), Resumed::FromStart);
        assert_eq!(classify(416, None, 4), Resumed::NotSatisfiable);
    }
}
