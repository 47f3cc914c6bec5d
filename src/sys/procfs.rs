//! Reading the process tree from /proc (Linux).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;

/// Per-process (or per-thread) /proc files that a sampler reads again and again, kept open:
/// opening and closing one is most of a read's cost, and a connection storm means hundreds of
/// backends (and request threads) read at every sample. The kernel writes such a file anew
/// for each read from its start.
#[derive(Debug)]
pub struct KeptFiles {
    open: HashMap<u32, File>,
    /// At most this many kept, so that a sampler never takes the descriptors a step's
    /// connections need; past it, files are opened for each read.
    limit: usize,
}

impl KeptFiles {
    pub fn new(limit: usize) -> Self {
        KeptFiles {
            open: HashMap::new(),
            limit,
        }
    }

    /// The file of process (or thread) `id` at `path`, read from its start and parsed. A kept
    /// file that no longer reads (its process ended, its id perhaps given to another since)
    /// is opened again.
    pub fn read<T>(
        &mut self,
        id: u32,
        path: impl FnOnce() -> String,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        if let Some(file) = self.open.get(&id) {
            if let Some(value) = read_from_start(file).as_deref().and_then(&parse) {
                return Some(value);
            }
            self.open.remove(&id);
        }
        let file = File::open(path()).ok()?;
        let value = parse(&read_from_start(&file)?)?;
        if self.open.len() < self.limit {
            self.open.insert(id, file);
        }
        Some(value)
    }

    /// Lets go of the files of every id not in `live`.
    pub fn keep_only(&mut self, live: &HashSet<u32>) {
        self.open.retain(|id, _| live.contains(id));
    }

    /// How many files are kept open now.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// One /proc file kept open and read whole from its start at each call: on a virtual machine
/// opening a /proc file costs several times reading it (some 30 µs against 6), and a sampler
/// reads the same few files ten times a second.
#[derive(Debug)]
pub struct KeptFile {
    path: String,
    file: Option<File>,
    buf: Vec<u8>,
}

impl KeptFile {
    pub fn new(path: impl Into<String>) -> Self {
        KeptFile {
            path: path.into(),
            file: None,
            buf: vec![0; 4096],
        }
    }

    /// The file's text now; opened again after a failed read (its process may have ended).
    pub fn read(&mut self) -> Option<&str> {
        let text = self.read_open();
        if text.is_none() {
            self.file = None;
        }
        let len = text?;
        std::str::from_utf8(&self.buf[..len]).ok()
    }

    /// The length read; the buffer grows until one read takes the whole file, so the text
    /// is one consistent snapshot.
    fn read_open(&mut self) -> Option<usize> {
        if self.file.is_none() {
            self.file = Some(File::open(&self.path).ok()?);
        }
        let file = self.file.as_ref()?;
        loop {
            let len = file.read_at(&mut self.buf, 0).ok()?;
            if len < self.buf.len() {
                return Some(len);
            }
            let doubled = self.buf.len() * 2;
            self.buf.resize(doubled, 0);
        }
    }
}

/// A small /proc file's text (schedstat, stat), read from its start.
fn read_from_start(file: &File) -> Option<String> {
    let mut buf = [0u8; 1024];
    let len = file.read_at(&mut buf, 0).ok()?;
    String::from_utf8(buf[..len].to_vec()).ok()
}

/// The live children of a single-threaded process (the postmaster is one).
/// This machine's name, as a report names where it ran; `localhost` when it has none.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

pub fn children(pid: u32) -> Vec<u32> {
    parse_children(
        &std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default(),
    )
}

/// The process ids in a /proc/PID/task/TID/children text.
pub fn parse_children(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .filter_map(|child| child.parse().ok())
        .collect()
}

/// A process's command name (/proc/PID/comm).
pub fn name(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_owned())
}

/// The process listening on TCP `port` on this machine: the socket's inode from
/// /proc/net/tcp{,6}, then the process holding it among /proc/*/fd (of several, as pgpool-II's
/// children inherit the socket, the one whose parent does not hold it). None when no listener
/// is found or its process cannot be read (another user's, without root).
///
/// `likely`, a process that probably listens there (the server's postmaster), is asked first:
/// when it holds the socket, no other process is scanned (a scan of every process's files
/// takes some 15 ms).
pub fn listener_pid(port: u16, likely: Option<u32>) -> Option<u32> {
    listener_pids(port, likely).first().copied()
}

/// Every process listening on TCP `port`, as `listener_pid` finds one: several when they
/// share the port with `so_reuseport` (PgBouncer's processes), each holding a socket of its
/// own; in pid order, which is the order they started unless pids wrapped.
pub fn listener_pids(port: u16, likely: Option<u32>) -> Vec<u32> {
    let wanted = listening_sockets(port);
    if wanted.is_empty() {
        return Vec::new();
    }
    if let Some(pid) = likely.filter(|pid| holds_any(*pid, &wanted)) {
        return vec![pid];
    }
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut holders: Vec<u32> = processes
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| holds_any(*pid, &wanted))
        .collect();
    holders.sort_unstable();
    (holders.iter().copied())
        .filter(|pid| parent(*pid).is_none_or(|parent| !holders.contains(&parent)))
        .collect()
}

/// The file links (`socket:[INODE]`) of the sockets listening on TCP `port`: IPv4's, or when
/// there are none, IPv6's. The kernel walks a table's whole hash to list a table with no
/// connection in it, as the IPv6 one often is (2.5 ms here), so it is read only when needed.
fn listening_sockets(port: u16) -> Vec<String> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| File::open(table).ok())
        .map(|file| listening_inodes(BufReader::new(file).lines().map_while(Result::ok), port))
        .find(|inodes| !inodes.is_empty())
        .unwrap_or_default()
        .into_iter()
        .map(|inode| format!("socket:[{inode}]"))
        .collect()
}

/// Whether process `pid` has one of `links` among its open files.
fn holds_any(pid: u32, links: &[String]) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .any(|link| links.iter().any(|w| link.as_os_str() == w.as_str()))
}

/// A process's parent, from /proc/PID/stat (field 4, after the command name).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The inodes of the sockets listening (state 0A) on `port` in a /proc/net/tcp table, read
/// line by line up to its first socket that is not listening: the kernel lists every listening
/// socket first, and the connected ones after them are all the sockets of the machine's recent
/// connections (a connection storm leaves thousands in TIME_WAIT), some 35 ms to list.
fn listening_inodes(lines: impl Iterator<Item = String>, port: u16) -> Vec<String> {
    let port = format!(":{port:04X}");
    lines
        .skip(1)
        .map_while(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            (*state == "0A").then(|| local.ends_with(&port).then(|| inode.to_string()))
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_file_reads_whole_and_anew_and_reopens_once_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters");
        let long = "x".repeat(10_000);
        std::fs::write(&path, &long).unwrap();
        let mut kept = KeptFile::new(path.to_str().unwrap());
        assert_eq!(
            kept.read(),
            Some(long.as_str()),
            "longer than its first buffer"
        );
        std::fs::write(&path, "2 3").unwrap();
        assert_eq!(kept.read(), Some("2 3"), "read from the start");
        std::fs::remove_file(&path).unwrap();
        // Kept open, the unlinked file still reads; nothing is left to open at the path.
        assert_eq!(kept.read(), Some("2 3"));
        assert_eq!(KeptFile::new(path.to_str().unwrap()).read(), None);
        let mut gone = KeptFile::new("/proc/0/stat");
        assert_eq!(gone.read(), None);
        let mut own = KeptFile::new("/proc/self/task/0/children");
        assert_eq!(own.read(), None);
    }

    #[test]
    fn children_are_the_ids_of_the_list() {
        assert_eq!(parse_children("12 345 \n"), vec![12, 345]);
        assert_eq!(parse_children(""), Vec::<u32>::new());
    }

    /// A thread of this process that lives until told to end, and its id.
    fn thread_until(end: crossbeam_channel::Receiver<()>) -> (u32, std::thread::JoinHandle<()>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let handle = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
            let _ = end.recv();
        });
        (rx.recv().unwrap(), handle)
    }

    #[test]
    fn kept_files_read_live_threads_let_go_of_ended_ones_and_keep_at_most_their_limit() {
        let (end, ended) = crossbeam_channel::bounded::<()>(0);
        let (one, first) = thread_until(ended.clone());
        let (two, second) = thread_until(ended);
        let path = |tid: u32| move || format!("/proc/self/task/{tid}/schedstat");
        let fields = |text: &str| Some(text.split_whitespace().count());
        let mut kept = KeptFiles::new(1);
        assert_eq!(kept.read(one, path(one), fields), Some(3));
        assert_eq!(kept.read(two, path(two), fields), Some(3), "read, not kept");
        assert_eq!(kept.len(), 1);
        assert_eq!(kept.read(one, path(one), fields), Some(3), "read again");
        drop(end);
        first.join().unwrap();
        second.join().unwrap();
        assert_eq!(kept.read(one, path(one), fields), None, "ended");
        assert!(kept.is_empty(), "the ended thread's file is let go");
        let mut kept = KeptFiles::new(8);
        let me = nix::unistd::gettid().as_raw() as u32;
        assert!(kept.read(me, path(me), fields).is_some());
        kept.keep_only(&HashSet::from([me + 1]));
        assert!(kept.is_empty());
    }

    #[test]
    fn this_process_is_found_listening_on_its_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(listener_pid(port, None), Some(std::process::id()));
        let me = Some(std::process::id());
        assert_eq!(
            listener_pid(port, me),
            me,
            "the likely listener, asked first"
        );
        let my_parent = Some(std::os::unix::process::parent_id());
        assert_eq!(
            listener_pid(port, my_parent),
            me,
            "a wrong guess: the scan finds it"
        );
        assert!(name(std::process::id()).is_some());
        assert_eq!(
            parent(std::process::id()),
            Some(std::os::unix::process::parent_id())
        );
        drop(listener);
        assert_eq!(listener_pid(port, None), None);
        assert_eq!(listener_pid(port, Some(std::process::id())), None);
    }

    #[test]
    fn a_listener_on_ipv6_alone_is_found_too() {
        let ip = std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
        let port = crate::sys::ports::free_listener_port(ip).expect("IPv6 loopback (::1)");
        let listener = std::net::TcpListener::bind((ip, port)).unwrap();
        assert_eq!(listener_pid(port, None), Some(std::process::id()));
        drop(listener);
        assert_eq!(listener_pid(port, None), None);
    }

    #[test]
    fn only_listening_sockets_of_the_port_count() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 4242 1
   1: 0100007F:1539 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 4444 1
   2: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 4545 1
   3: 0100007F:1538 0100007F:9C40 01 00000000:00000000 00:00000000 00000000   107        0 4343 1
   4: 0100007F:1540 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 4646 1";
        let inodes = |port| listening_inodes(table.lines().map(str::to_owned), port);
        assert_eq!(inodes(0x1538), ["4242", "4545"]);
        assert_eq!(inodes(0x1539), ["4444"]);
        assert!(inodes(80).is_empty());
        // The kernel lists no listening socket after a connected one: the reading stops there.
        assert!(inodes(0x1540).is_empty());
    }

    #[test]
    fn the_children_of_a_shell_are_listed() {
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut found = Vec::new();
        while found.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = children(shell.id());
        }
        for pid in &found {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        shell.kill().unwrap();
        shell.wait().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(children(u32::MAX).is_empty());
    }
}
