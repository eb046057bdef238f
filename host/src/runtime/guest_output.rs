//! Where a plugin's stdout and stderr go: line by line into the host log, with
//! the last few KiB kept so a fault report can show what the plugin printed
//! (a Rust panic message, for instance).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

const TAIL_BYTES: usize = 4096;
const MAX_LINE: usize = 8192;

/// A sink shared by every stream a plugin instance opens on stdout or stderr.
#[derive(Clone)]
pub struct GuestOutput {
    plugin: Arc<str>,
    inner: Arc<Mutex<Buffers>>,
}

#[derive(Default)]
struct Buffers {
    tail: VecDeque<u8>,
    line: Vec<u8>,
}

impl GuestOutput {
    pub fn new(plugin: Arc<str>) -> Self {
        GuestOutput {
            plugin,
            inner: Arc::default(),
        }
    }

    /// The last bytes the plugin wrote, lossily decoded.
    pub fn tail(&self) -> String {
        let Ok(buffers) = self.inner.lock() else {
            return String::new();
        };
        let bytes: Vec<u8> = buffers.tail.iter().copied().collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    fn write(&self, bytes: &[u8]) {
        let Ok(mut buffers) = self.inner.lock() else {
            return;
        };
        for &byte in bytes {
            if buffers.tail.len() == TAIL_BYTES {
                buffers.tail.pop_front();
            }
            buffers.tail.push_back(byte);
            if byte == b'\n' || buffers.line.len() >= MAX_LINE {
                let line = std::mem::take(&mut buffers.line);
                tracing::info!(plugin = %self.plugin, "{}", String::from_utf8_lossy(&line));
            } else {
                buffers.line.push(byte);
            }
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
