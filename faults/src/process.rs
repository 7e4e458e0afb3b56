//! Processes the scenarios start and kill: servers and workers, on
//! loopback, stopped by their process id.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Whether the long version of the suite runs (`ORCHESTRIX_FAULTS=full`).
pub fn full() -> bool {
    std::env::var("ORCHESTRIX_FAULTS").is_ok_and(|v| v == "full")
}

/// `short` in CI and by default, `long` under `ORCHESTRIX_FAULTS=full`.
pub fn scaled<T>(short: T, long: T) -> T {
    if full() {
        long
    } else {
        short
    }
}

/// A loopback port nothing listens on now (the OS picks it).
pub fn free_port() -> u16 {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("the OS gives a free loopback port")
}

/// Waits until something accepts connections on `port`, for at most
/// `timeout`; returns whether it did.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into(), Duration::from_millis(200))
            .is_ok()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Sends SIGKILL to the process `pid` (through `kill -9`, so that no
/// unsafe code is needed), and returns whether `kill` succeeded.
pub fn sigkill(pid: u32) -> bool {
    Command::new("kill").args(["-9", &pid.to_string()]).status().is_ok_and(|status| status.success())
}

/// A child process killed (SIGKILL) and reaped when dropped, so that a
/// failing scenario leaves no server behind.
#[derive(Debug)]
pub struct Guarded {
    child: Option<Child>,
    name: String,
}

impl Guarded {
    /// Starts `command`, named `name` in messages.
    pub fn spawn(name: impl Into<String>, command: &mut Command) -> std::io::Result<Self> {
        let name = name.into();
        let child = command.spawn()?;
        Ok(Self { child: Some(child), name })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}
