//! Loopback networking for the process tests: free ports, and HTTP/1.1
//! spoken by hand (no client to start, usable from any thread).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use super::process::HANG;

/// A loopback port nothing listens on yet.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `127.0.0.1:PORT` with a port nothing listens on yet.
pub(crate) fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// One HTTP/1.1 request with a JSON body to `addr`; the status and the
/// body, `None` while nothing answers.
pub(crate) fn http(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(HANG)).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let status = reply.split_whitespace().nth(1)?.parse().ok()?;
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_owned()))
}
