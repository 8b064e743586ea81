//! Debian's `redis-server` as a child process of a test: on 127.0.0.1, a free port, its
//! data in a folder the test owns, killed (with SIGKILL) when dropped. It can be killed and
//! started again on the same port and data, stopped, and have its data deleted, as the
//! tests of the Redis broker need.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::child::Spawned;
use crate::relay::free_port;
use crate::wait::Poll;

/// How long a start may take (loading an append-only file included).
const READY: Poll = Poll::up_to(Duration::from_secs(20));

/// How durable the server is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `appendonly yes`, `appendfsync always`: an accepted write survives a SIGKILL.
    Always,
    /// `appendonly yes`, `appendfsync everysec`: up to a second of writes is at risk in a
    /// crash of the machine (a SIGKILL alone leaves them in the OS's cache).
    EverySec,
    /// No append-only file and no automatic snapshot: a restart is an empty server, or
    /// the last snapshot a test made (`SAVE`).
    None,
    /// What the config file says.
    Config,
}

/// A running (or stopped) `redis-server`.
pub struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    durability: Durability,
    /// More `redis-server` flags (a cluster node's).
    extra: Vec<String>,
    /// A config file read first (a deployment's), the flags over it.
    config: Option<PathBuf>,
    child: Option<Spawned>,
}

impl RedisServer {
    /// Starts `redis-server` with its data in `dir` (made if missing) and waits until it
    /// answers `PING`.
    pub fn start(dir: &Path, durability: Durability) -> io::Result<RedisServer> {
        Self::start_with(dir, durability, Vec::new())
    }

    /// [`RedisServer::start`] with more `redis-server` flags.
    pub fn start_with(dir: &Path, durability: Durability, extra: Vec<String>) -> io::Result<RedisServer> {
        std::fs::create_dir_all(dir)?;
        let mut server =
            RedisServer { port: free_port()?, dir: dir.to_owned(), durability, extra, config: None, child: None };
        server.restart()?;
        Ok(server)
    }

    /// Starts `redis-server CONFIG` (a deployment's file, its durability kept) on a free
    /// loopback port with its data in `dir`.
    pub fn start_with_config(dir: &Path, config: &Path) -> io::Result<RedisServer> {
        std::fs::create_dir_all(dir)?;
        let (port, dir) = (free_port()?, dir.to_owned());
        let config = Some(config.to_owned());
        let mut server =
            RedisServer { port, dir, durability: Durability::Config, extra: Vec::new(), config, child: None };
        server.restart()?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("redis-server");
        if let Some(config) = &self.config {
            cmd.arg(config);
        }
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--logfile", ""])
            .arg("--dir")
            .arg(&self.dir);
        match self.durability {
            Durability::Always => cmd.args(["--appendonly", "yes", "--appendfsync", "always"]),
            Durability::EverySec => cmd.args(["--appendonly", "yes", "--appendfsync", "everysec"]),
            Durability::None => cmd.args(["--appendonly", "no"]),
            Durability::Config => &mut cmd,
        };
        cmd.args(&self.extra);
        cmd
    }

    /// Starts it again (after [`RedisServer::kill`] or [`RedisServer::stop`]) on the same
    /// port and data, and waits until it answers.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let mut child = Spawned::spawn(&mut self.command(), "redis-server", None)?;
        let port = self.port;
        let ready = READY.check(|| {
            if let Some(status) = child.exited() {
                return Some(Err(io::Error::other(format!("redis-server exited ({status}):\n{}", child.log.tail(20)))));
            }
            ping(port).then_some(Ok(()))
        });
        self.child = Some(child);
        ready.unwrap_or_else(|| Err(io::Error::other(format!("redis-server on port {port} did not answer PING"))))
    }

    /// SIGKILL: no chance to write anything more.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Kills it and deletes its data: the next start is an empty server.
    pub fn kill_and_delete_data(&mut self) -> io::Result<()> {
        self.kill();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(Spawned::is_running)
    }

    /// One command's reply, as `redis-cli` prints it.
    pub fn cli(&self, args: &[&str]) -> io::Result<String> {
        let out =
            Command::new("redis-cli").args(["-h", "127.0.0.1", "-p", &self.port.to_string()]).args(args).output()?;
        if !out.status.success() {
            return Err(io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a server on `port` answers `PING` with `PONG` (not `LOADING`).
fn ping(port: u16) -> bool {
    let probe = || -> io::Result<bool> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"PING\r\n")?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line.starts_with("+PONG"))
    };
    probe().unwrap_or(false)
}

/// A Redis Cluster of `masters` masters and no replicas (`redis-server --cluster-enabled
/// yes` each, joined by `redis-cli --cluster create`), its slots spread over them.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes, each with its data in `dir/node-N`, creates the cluster, and
    /// waits until every node says `cluster_state:ok`.
    pub fn start(dir: &Path, masters: usize) -> io::Result<RedisCluster> {
        let mut nodes = Vec::new();
        for n in 0..masters {
            let flags =
                ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"];
            let extra = flags.iter().map(|f| (*f).to_owned()).collect();
            nodes.push(RedisServer::start_with(&dir.join(format!("node-{n}")), Durability::None, extra)?);
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&out.stdout)
            )));
        }
        let cluster = RedisCluster { nodes };
        let ok = |n: &RedisServer| n.cli(&["CLUSTER", "INFO"]).is_ok_and(|i| i.contains("cluster_state:ok"));
        READY
            .check(|| cluster.nodes.iter().all(ok).then_some(()))
            .ok_or_else(|| io::Error::other("the cluster is not ok"))?;
        Ok(cluster)
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,…`: every node a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }
}
