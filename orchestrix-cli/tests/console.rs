//! `orchestrix console` as a process (ADR 0051): it serves the console's
//! pages on the store it opened by URL, and refuses actions without the
//! write token.

mod support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::Child;

use support::{command, seed, sqlite};

/// The console process, ended (by its id) when dropped.
struct Served {
    child: Child,
    address: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `orchestrix --store URL console` on a free port and waits for
/// the line that names its address.
fn serve(url: &str, token: Option<&str>) -> Served {
    let mut command = command(&["--store", url, "console", "--listen", "127.0.0.1:0"]);
    command.env_remove("ORCHESTRIX_CONSOLE_TOKEN");
    if let Some(token) = token {
        command.env("ORCHESTRIX_CONSOLE_TOKEN", token);
    }
    let mut child = command.spawn().expect("the binary runs");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("a line on stderr");
    if let Some(token) = token {
        assert!(!line.contains(token), "the token is never printed: {line}");
    }
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Served { child, address }
}

/// One HTTP/1.1 request; the status code and the body.
fn request(address: &str, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connects");
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        .expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads");
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, response)
}

#[test]
fn the_console_serves_pages_and_refuses_actions_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (store, url) = rt.block_on(sqlite(dir.path(), "bank.db"));
    rt.block_on(seed(&store));
    let letter = orchestrix::Uuid::now_v7();

    let served = serve(&url, None);
    let (status, page) = request(&served.address, "GET", "/");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Account/1") && page.contains("Order/9"), "the streams are listed: {page}");
    let (status, page) = request(&served.address, "GET", "/stream?id=Account/1");
    assert_eq!(status, 200, "{page}");
    let (status, _) = request(&served.address, "POST", &format!("/dead-letters/{letter}/drop"));
    assert!(matches!(status, 404 | 405), "read-only: no action route ({status})");
    drop(served);

    let served = serve(&url, Some("s3cret-token"));
    let (status, page) = request(&served.address, "POST", &format!("/dead-letters/{letter}/drop"));
    assert!(matches!(status, 401 | 403), "an action without the token is refused ({status}): {page}");
    assert!(!page.contains("s3cret-token"));
}

#[test]
fn a_missing_store_is_not_served() {
    let mut command = command(&["--store", "sqlite://no/such.db", "console", "--listen", "127.0.0.1:0"]);
    let output = command.output().expect("runs");
    assert_eq!(output.status.code(), Some(4), "{output:?}");
}
