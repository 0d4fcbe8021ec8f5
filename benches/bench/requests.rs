//! DynamoDB requests counted by operation from outside the worker: a TCP proxy in front of
//! dynalite reads each request's `X-Amz-Target` header on its way through.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What precedes the operation's name in the header's value.
const TARGET: &[u8] = b"DynamoDB_20120810.";

pub struct RequestCounter {
    pub port: u16,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl RequestCounter {
    /// Relays 127.0.0.1:`port` to 127.0.0.1:`upstream`, a thread per direction and connection
    /// (a counting run is not a timed one). The accepting thread outlives the run, idle.
    pub fn start(upstream: u16) -> RequestCounter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::<Mutex<BTreeMap<String, u64>>>::default();
        let shared = Arc::clone(&counts);
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut requests, mut upstream_in) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut responses, mut client_out) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut responses, &mut client_out);
                    let _ = client_out.shutdown(Shutdown::Both);
                });
                let counts = Arc::clone(&shared);
                std::thread::spawn(move || relay(&mut requests, &mut upstream_in, &counts));
            }
        });
        RequestCounter { port, counts }
    }

    /// The requests so far, by operation, and forgets them.
    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counts.lock().unwrap())
    }
}

/// Copies `from` to `to`, counting each operation named once its header line has arrived
/// whole. The end of the previous read is kept, so a header split between reads is seen;
/// one that ended there was counted already.
fn relay(from: &mut TcpStream, to: &mut TcpStream, counts: &Mutex<BTreeMap<String, u64>>) {
    let mut buffer = vec![0; 64 * 1024];
    let mut seen: Vec<u8> = Vec::new();
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
        let kept = seen.len();
        seen.extend_from_slice(&buffer[..read]);
        let mut at = 0;
        while let Some(found) = find(&seen[at..], TARGET) {
            let name_at = at + found + TARGET.len();
            let Some(length) = seen[name_at..].iter().position(|byte| *byte == b'\r') else {
                break;
            };
            if name_at + length >= kept {
                let name = String::from_utf8_lossy(&seen[name_at..name_at + length]).into_owned();
                *counts.lock().unwrap().entry(name).or_default() += 1;
            }
            at = name_at + length;
        }
        seen.drain(..seen.len().saturating_sub(64));
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}
