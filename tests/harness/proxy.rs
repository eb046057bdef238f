//! A TCP proxy in front of a registry that dies for good once it has forwarded a
//! given number of response bytes: a registry going away mid-download.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

pub struct DyingProxy {
    /// `127.0.0.1:PORT`
    pub address: String,
    /// Set once the proxy has died.
    pub dead: Arc<AtomicBool>,
}

impl DyingProxy {
    pub fn start(upstream: &str, die_after: u64) -> DyingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let dead = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let upstream = upstream.to_string();
        let flag = dead.clone();
        thread::spawn(move || {
            // Dropping the listener when dead makes new connections fail at once.
            while !flag.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                open.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                pump(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    None,
                );
                let budget = Budget {
                    forwarded: forwarded.clone(),
                    limit: die_after,
                    dead: flag.clone(),
                    open: open.clone(),
                };
                pump(server, client, Some(budget));
            }
        });
        DyingProxy { address, dead }
    }
}

/// Counts response bytes and kills every connection when the limit is passed.
struct Budget {
    forwarded: Arc<AtomicU64>,
    limit: u64,
    dead: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, budget: Option<Budget>) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            if let Some(budget) = &budget {
                let total = budget.forwarded.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                if total >= budget.limit {
                    budget.dead.store(true, Ordering::SeqCst);
                    for stream in budget.open.lock().unwrap().iter() {
                        let _ = stream.shutdown(Shutdown::Both);
                    }
                    break;
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// A TCP forwarder that can be closed and opened again: a network cut between
/// the daemon and a server that itself stays up.
pub struct Gate {
    /// `127.0.0.1:PORT`
    pub address: String,
    closed: Arc<AtomicBool>,
    open_streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Gate {
    pub fn start(upstream: &str) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let closed = Arc::new(AtomicBool::new(false));
        let open_streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let upstream = upstream.to_string();
        let (flag, streams) = (closed.clone(), open_streams.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                // While closed, connections are accepted and dropped at once.
                if flag.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                streams
                    .lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                pump(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    None,
                );
                pump(server, client, None);
            }
        });
        Gate {
            address,
            closed,
            open_streams,
        }
    }

    /// Cuts every connection and refuses new ones until [`Gate::open`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for stream in self.open_streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
    }
}
