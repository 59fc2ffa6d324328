//! A minimal HTTP/1.1 keep-alive client: one request at a time per connection, the request
//! pre-assembled by the caller, only the status read back. It costs the load core little more
//! than the syscalls, like wrk does, so the server is what gets measured.

use std::{io, net::SocketAddr};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let mut conn = Self {
            addr,
            stream: None,
            buf: Vec::with_capacity(4096),
        };
        conn.reconnect().await?;
        Ok(conn)
    }

    async fn reconnect(&mut self) -> io::Result<()> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        self.stream = Some(stream);
        self.buf.clear();
        Ok(())
    }

    /// Sends one complete request and returns the response status; reconnects first if the
    /// previous exchange failed or the server closed the connection.
    pub async fn request(&mut self, request: &[u8]) -> io::Result<u16> {
        if self.stream.is_none() {
            self.reconnect().await?;
        }
        let result = self.exchange(request).await;
        if !matches!(result, Ok((_, true))) {
            self.stream = None;
        }
        result.map(|(status, _)| status)
    }

    /// Returns the status and whether the connection may be reused.
    async fn exchange(&mut self, request: &[u8]) -> io::Result<(u16, bool)> {
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| io::Error::other("not connected"))?;
        stream.write_all(request).await?;
        self.buf.clear();
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end])
                    .map_err(|_| io::Error::other("response head is not UTF-8"))?;
                let status = parse_status(head)?;
                let length = header(head, "content-length")
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or_else(|| io::Error::other("response without content-length"))?;
                let keep =
                    !header(head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
                let total = end + 4 + length;
                while self.buf.len() < total {
                    if stream.read_buf(&mut self.buf).await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                return Ok((status, keep));
            }
            if stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_status(head: &str) -> io::Result<u16> {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("malformed status line"))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 8\r\nconnection: keep-alive";
        assert_eq!(parse_status(head).unwrap(), 200);
        assert_eq!(header(head, "content-length"), Some("8"));
        assert_eq!(header(head, "Connection"), Some("keep-alive"));
        assert_eq!(find(b"ab\r\n\r\ncd", b"\r\n\r\n"), Some(2));
    }
}
