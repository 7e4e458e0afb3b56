//! NATS servers of the scenarios' own: a JetStream cluster of three
//! `nats-server` processes (or a single server) on loopback ports, each
//! with its configuration file and data folder in a folder the test owns,
//! killed with SIGKILL and restarted by their process id.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orchestrix_adapters::nats::async_nats::jetstream;

use crate::process::{wait_for_port, Guarded};

/// Where the scenarios find `nats-server` (`ORCHESTRIX_NATS_SERVER`, else
/// `/usr/sbin/nats-server`, else the first one on `PATH`), or `None`.
pub fn nats_server_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORCHESTRIX_NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let fixed = PathBuf::from("/usr/sbin/nats-server");
    if fixed.is_file() {
        return Some(fixed);
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join("nats-server")).find(|p| p.is_file())
}

/// [`nats_server_binary`], or `None` (with the reason printed) when there
/// is none outside CI; under CI a missing binary fails (ADR 0037).
pub fn nats_server_or_skip() -> Option<PathBuf> {
    let found = nats_server_binary();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "nats-server is not installed, but CI is: the NATS fault scenarios must run in CI \
             (set ORCHESTRIX_NATS_SERVER to its path)"
        );
        eprintln!("skipped: no nats-server (set ORCHESTRIX_NATS_SERVER to its path)");
    }
    found
}

/// `2 * size` different free loopback ports, (client, cluster) per
/// server: all held open at once while they are picked, so that none is
/// handed out twice.
fn distinct_ports(size: usize) -> Result<Vec<(u16, u16)>, StartError> {
    let error = |e: std::io::Error| StartError(format!("no free loopback port: {e}"));
    let listeners = (0..2 * size)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)?;
    let ports =
        listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<Vec<_>, _>>().map_err(error)?;
    Ok(ports.chunks(2).map(|pair| (pair[0], pair[1])).collect())
}

/// One server of a [`NatsCluster`].
#[derive(Debug)]
pub struct Node {
    /// Its server name (`n0`, `n1`, ...), as JetStream names the stream's
    /// leader and replicas.
    pub name: String,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
    process: Option<Guarded>,
}

impl Node {
    /// Its client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Whether its process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|process| !process.has_exited())
    }
}

/// Servers started by a scenario, stopped (SIGKILL, by pid) when dropped.
#[derive(Debug)]
pub struct NatsCluster {
    binary: PathBuf,
    nodes: Vec<Node>,
}

/// Why the servers could not be started.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl NatsCluster {
    /// Starts `size` JetStream servers (1, or 3 and more for a cluster
    /// named `orx-faults`) with `binary`, their files under `dir`, and
    /// waits until each accepts connections.
    pub fn start(binary: &Path, dir: &Path, size: usize) -> Result<Self, StartError> {
        if size == 0 {
            return Err(StartError("a cluster needs at least one server".into()));
        }
        let ports = distinct_ports(size)?;
        let routes: Vec<String> =
            ports.iter().map(|(_, cluster)| format!("\"nats-route://127.0.0.1:{cluster}\"")).collect();
        let mut nodes = Vec::with_capacity(size);
        for (i, (port, cluster_port)) in ports.iter().enumerate() {
            let name = format!("n{i}");
            let data = dir.join(&name);
            std::fs::create_dir_all(&data).map_err(|e| StartError(format!("cannot create {}: {e}", data.display())))?;
            let mut config = format!(
                "server_name: \"{name}\"\nlisten: \"127.0.0.1:{port}\"\n\
                 jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 67108864\n  max_file_store: 1073741824\n}}\n",
                data.display()
            );
            if size > 1 {
                let _ = write!(
                    config,
                    "cluster {{\n  name: \"orx-faults\"\n  listen: \"127.0.0.1:{cluster_port}\"\n  routes: [{}]\n}}\n",
                    routes.join(", ")
                );
            }
            let path = dir.join(format!("{name}.conf"));
            std::fs::write(&path, config).map_err(|e| StartError(format!("cannot write {}: {e}", path.display())))?;
            let log = dir.join(format!("{name}.log"));
            nodes.push(Node { name, port: *port, config: path, log, process: None });
        }
        let mut cluster = Self { binary: binary.to_owned(), nodes };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        for i in 0..size {
            cluster.wait_listening(i)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<(), StartError> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| StartError(format!("cannot open {}: {e}", node.log.display())))?;
        let err = log.try_clone().map_err(|e| StartError(e.to_string()))?;
        let process = Guarded::spawn(
            format!("nats-server {}", node.name),
            Command::new(&self.binary)
                .arg("-c")
                .arg(&node.config)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(err)),
        )
        .map_err(|e| StartError(format!("cannot start {}: {e}", self.binary.display())))?;
        node.process = Some(process);
        Ok(())
    }

    fn wait_listening(&mut self, i: usize) -> Result<(), StartError> {
        let node = &mut self.nodes[i];
        if wait_for_port(node.port, Duration::from_secs(30)) {
            return Ok(());
        }
        let log = std::fs::read_to_string(&node.log).unwrap_or_default();
        Err(StartError(format!(
            "nats-server {} did not listen on {} within 30 s; its log:\n{log}",
            node.name, node.port
        )))
    }

    /// The servers.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Every server's URL, comma-separated: what a client of the cluster
    /// is given.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(Node::url).collect::<Vec<_>>().join(",")
    }

    /// The index of the server named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// Kills server `i` with SIGKILL (no shutdown of any kind) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.nodes[i].process.take() {
            process.kill();
        }
    }

    /// Starts server `i` again, on its port, from its data folder, and
    /// waits until it accepts connections.
    pub fn restart(&mut self, i: usize) -> Result<(), StartError> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_listening(i)
    }

    /// Whether server `i` runs.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// The log of server `i` (for failure messages).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// The last `lines` lines of every server's log, each headed by its
    /// name (for failure messages).
    pub fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let log = self.log(i);
            let all: Vec<&str> = log.lines().collect();
            let _ = writeln!(out, "--- {} (port {}):", node.name, node.port);
            for line in &all[all.len().saturating_sub(lines)..] {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }
}

/// Where a replicated stream is: its leader's server name and whether
/// every replica is current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The leader's server name, if the stream has one.
    pub leader: Option<String>,
    /// The other replicas: (server name, current and online).
    pub replicas: Vec<(String, bool)>,
    /// Messages in the stream.
    pub messages: u64,
}

impl Placement {
    /// Whether a leader serves and every replica is online and current.
    pub fn healthy(&self, replicas: usize) -> bool {
        self.leader.is_some() && self.replicas.len() + 1 == replicas && self.replicas.iter().all(|(_, ok)| *ok)
    }
}

/// The stream's placement, from JetStream's stream info (`None` while no
/// server answers for it).
pub async fn placement(js: &jetstream::Context, stream: &str) -> Option<Placement> {
    let mut stream = tokio::time::timeout(Duration::from_secs(3), js.get_stream(stream)).await.ok()?.ok()?;
    let info = tokio::time::timeout(Duration::from_secs(3), stream.info()).await.ok()?.ok()?;
    let cluster = info.cluster.clone();
    Some(Placement {
        leader: cluster.as_ref().and_then(|c| c.leader.clone()),
        replicas: cluster
            .map(|c| c.replicas.into_iter().map(|peer| (peer.name, peer.current && !peer.offline)).collect())
            .unwrap_or_default(),
        messages: info.state.messages,
    })
}

/// Waits (at most `timeout`) until the stream has a leader and every one
/// of its `replicas` is current; returns the placement then, or the last
/// one seen.
pub async fn wait_healthy(
    js: &jetstream::Context,
    stream: &str,
    replicas: usize,
    timeout: Duration,
) -> Result<Placement, Option<Placement>> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(now) = placement(js, stream).await {
            if now.healthy(replicas) {
                return Ok(now);
            }
            last = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}
