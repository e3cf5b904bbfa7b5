//! Reading CRI logs back (`kubectl logs`): the records of a container's log file and its rotated
//! predecessors (`path.N-1` … `path.1`, oldest first), as the kubelet prints them: the content of each
//! record, a line end after each full (`F`) record, optionally each record's timestamp first. Options as
//! upstream's PodLogOptions: the last N lines, only records since a time, at most N bytes, and follow,
//! which goes on reading the live file (across rotations) until the container has ended.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use super::logs::Stream;

/// How often a followed log is checked for new records.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);
/// The most files of a rotation that are looked for.
const MAX_ROTATED: u32 = 64;

/// What to read, as `kubectl logs` asks for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// Only the last N lines (full lines: a long line's partial records count once).
    pub tail_lines: Option<u64>,
    /// Only records at or after this time.
    pub since: Option<jiff::Timestamp>,
    /// Prefix every record with its RFC 3339 timestamp (nanoseconds, trailing zeros dropped, as Go's
    /// `RFC3339Nano`).
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
    /// Keep reading new records until the container has ended.
    pub follow: bool,
}

/// One CRI record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub time: jiff::Timestamp,
    pub stream: Stream,
    /// A piece of a longer line (`P`); the line's last piece is full (`F`).
    pub partial: bool,
    pub content: Vec<u8>,
}

impl Record {
    /// Parses `TIME STREAM TAG CONTENT` (without the line end); `None` for anything else.
    pub fn parse(line: &[u8]) -> Option<Record> {
        let mut fields = line.splitn(4, |b| *b == b' ');
        let time = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
        let stream = match fields.next()? {
            b"stdout" => Stream::Stdout,
            b"stderr" => Stream::Stderr,
            _ => return None,
        };
        let partial = match fields.next()? {
            b"P" => true,
            b"F" => false,
            _ => return None,
        };
        let content = fields.next().unwrap_or_default().to_vec();
        Some(Record {
            time,
            stream,
            partial,
            content,
        })
    }

    /// The record as `kubectl logs` prints it.
    fn render(&self, timestamps: bool, out: &mut Vec<u8>) {
        if timestamps {
            out.extend_from_slice(rfc3339_nano(self.time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.content);
        if !self.partial {
            out.push(b'\n');
        }
    }
}

/// Go's `time.RFC3339Nano` in UTC: up to nine fraction digits, trailing zeros (and a bare dot) dropped.
fn rfc3339_nano(time: jiff::Timestamp) -> String {
    let fraction = format!("{:09}", time.subsec_nanosecond());
    let fraction = fraction.trim_end_matches('0');
    let seconds = time.strftime("%Y-%m-%dT%H:%M:%S");
    if fraction.is_empty() {
        format!("{seconds}Z")
    } else {
        format!("{seconds}.{fraction}Z")
    }
}

/// The files of a log, oldest first: the rotated ones that exist, then the live one.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let rotated = |n: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    let mut files: Vec<PathBuf> = (1..MAX_ROTATED)
        .map(rotated)
        .take_while(|file| file.exists())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    files
}

/// Applies the options to records as they come: since, tail (held back until the end of what exists) and the
/// byte limit.
struct Filter {
    options: LogOptions,
    /// With a tail: the last lines seen, each the rendering of its records.
    tail: Option<VecDeque<Vec<u8>>>,
    /// The rendering of the current line's records so far (with a tail).
    line: Vec<u8>,
    sent: u64,
}

impl Filter {
    fn new(options: LogOptions) -> Self {
        let tail = options.tail_lines.map(|_| VecDeque::new());
        Self {
            options,
            tail,
            line: Vec::new(),
            sent: 0,
        }
    }

    /// Adds a record; what may be sent at once goes to `out`.
    fn push(&mut self, record: &Record, out: &mut Vec<u8>) {
        if self.options.since.is_some_and(|since| record.time < since) {
            return;
        }
        let Some(tail) = &mut self.tail else {
            record.render(self.options.timestamps, out);
            return;
        };
        record.render(self.options.timestamps, &mut self.line);
        if !record.partial {
            tail.push_back(std::mem::take(&mut self.line));
            let keep = self.options.tail_lines.unwrap_or_default();
            while tail.len() as u64 > keep {
                tail.pop_front();
            }
        }
    }

    /// The end of what was there: the tail is released, and records pass straight through from now on.
    fn release(&mut self, out: &mut Vec<u8>) {
        if let Some(tail) = self.tail.take() {
            for line in tail {
                out.extend_from_slice(&line);
            }
            if self.options.tail_lines != Some(0) {
                out.append(&mut self.line);
            }
            self.line.clear();
        }
    }

    /// Cuts `out` to the byte limit; `false` once the limit is reached.
    fn limit(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(limit) = self.options.limit_bytes else {
            return true;
        };
        let room = limit.saturating_sub(self.sent);
        if out.len() as u64 >= room {
            out.truncate(room as usize);
            self.sent = limit;
            return false;
        }
        self.sent += out.len() as u64;
        true
    }
}

/// Reads the complete records that follow in an open file, keeping an unfinished last line for later.
struct Follower {
    reader: BufReader<File>,
    pending: Vec<u8>,
    inode: u64,
}

impl Follower {
    fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let inode = file.metadata()?.ino();
        Ok(Self {
            reader: BufReader::new(file),
            pending: Vec::new(),
            inode,
        })
    }

    /// Every complete record from where the last read stopped.
    fn read(&mut self, filter: &mut Filter, out: &mut Vec<u8>) -> io::Result<()> {
        loop {
            let read = self.reader.read_until(b'\n', &mut self.pending)?;
            if read == 0 || !self.pending.ends_with(b"\n") {
                return Ok(());
            }
            self.pending.pop();
            if let Some(record) = Record::parse(&self.pending) {
                filter.push(&record, out);
            }
            self.pending.clear();
        }
    }

    /// Whether the live file at `path` is another file than the one being read (it was rotated).
    fn rotated(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|meta| meta.ino() != self.inode)
    }
}

/// Reads a container's log as the options ask; the returned channel yields the output in pieces and closes at
/// the end (at once without `follow`; with it, once `ended` resolves and the last records are read, or when
/// the receiver is dropped). A log that does not exist yet reads as empty.
pub fn read<F>(path: PathBuf, options: LogOptions, ended: F) -> mpsc::Receiver<io::Result<Vec<u8>>>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        if let Err(err) = pump(&path, options, ended, &tx).await {
            let _ = tx.send(Err(err)).await;
        }
    });
    rx
}

async fn pump<F>(
    path: &Path,
    options: LogOptions,
    ended: F,
    tx: &mpsc::Sender<io::Result<Vec<u8>>>,
) -> io::Result<()>
where
    F: std::future::Future<Output = ()> + Send,
{
    let follow = options.follow;
    let mut filter = Filter::new(options);
    // The live file is opened first, so that a rotation while the older files are read loses nothing.
    let mut live = match Follower::open(path) {
        Ok(live) => Some(live),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => return Err(err),
    };
    let mut out = Vec::new();
    for file in log_files(path).iter().rev().skip(1).rev() {
        match File::open(file) {
            Ok(file) => read_whole(file, &mut filter, &mut out)?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        if !send(&mut filter, &mut out, tx).await {
            return Ok(());
        }
    }
    if let Some(live) = &mut live {
        live.read(&mut filter, &mut out)?;
    }
    filter.release(&mut out);
    if !send(&mut filter, &mut out, tx).await || !follow {
        return Ok(());
    }

    tokio::pin!(ended);
    let mut done = false;
    loop {
        if live.is_none() {
            live = match Follower::open(path) {
                Ok(live) => Some(live),
                Err(err) if err.kind() == io::ErrorKind::NotFound => None,
                Err(err) => return Err(err),
            };
        }
        if let Some(current) = &mut live {
            current.read(&mut filter, &mut out)?;
            if current.rotated(path) {
                // The writer finished the old file before it renamed it: what it wrote since the read
                // above is read now, and the new live file from its start.
                current.read(&mut filter, &mut out)?;
                live = Some(Follower::open(path)?);
                continue;
            }
        }
        if !send(&mut filter, &mut out, tx).await || done {
            return Ok(());
        }
        tokio::select! {
            () = &mut ended, if !done => done = true,
            () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
            () = tx.closed() => return Ok(()),
        }
    }
}

fn read_whole(file: File, filter: &mut Filter, out: &mut Vec<u8>) -> io::Result<()> {
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if let Some(record) = Record::parse(&line) {
            filter.push(&record, out);
        }
    }
}

/// Sends what is ready; `false` when the reader is gone or the byte limit reached.
async fn send(
    filter: &mut Filter,
    out: &mut Vec<u8>,
    tx: &mpsc::Sender<io::Result<Vec<u8>>>,
) -> bool {
    let more = filter.limit(out);
    if !out.is_empty() && tx.send(Ok(std::mem::take(out))).await.is_err() {
        return false;
    }
    more
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::LogConfig;
    use crate::runtime::logs::{LineSplitter, LogWriter};

    async fn collect(mut rx: mpsc::Receiver<io::Result<Vec<u8>>>) -> String {
        let mut text = Vec::new();
        while let Some(piece) = rx.recv().await {
            text.extend(piece.unwrap());
        }
        String::from_utf8(text).unwrap()
    }

    fn write_lines(log: &mut LogWriter, lines: &[&str]) {
        let mut out = LineSplitter::new(Stream::Stdout);
        for line in lines {
            out.feed(format!("{line}\n").as_bytes(), log).unwrap();
        }
    }

    fn writer(path: &Path, max_size: u64, max_files: u32) -> LogWriter {
        LogWriter::open(
            path,
            &LogConfig {
                path: None,
                max_size,
                max_files,
            },
        )
        .unwrap()
    }

    #[test]
    fn records_parse_and_render_like_the_kubelet() {
        let record = Record::parse(b"2024-01-02T03:04:05.120000000Z stderr P abc def").unwrap();
        assert_eq!(record.stream, Stream::Stderr);
        assert!(record.partial);
        assert_eq!(record.content, b"abc def");
        let mut out = Vec::new();
        record.render(true, &mut out);
        assert_eq!(out, b"2024-01-02T03:04:05.12Z abc def");
        let whole = Record::parse(b"2024-01-02T03:04:05.000000000Z stdout F ").unwrap();
        let mut out = Vec::new();
        whole.render(true, &mut out);
        assert_eq!(out, b"2024-01-02T03:04:05Z \n");
        assert!(Record::parse(b"garbage").is_none());
        assert!(Record::parse(b"2024-01-02T03:04:05Z stdin F x").is_none());
    }

    #[tokio::test]
    async fn tail_counts_whole_lines_across_rotated_files_and_limit_cuts_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut log = writer(&path, 200, 4);
        let lines: Vec<String> = (0..30)
            .map(|i| format!("line {i:02} {}", "x".repeat(30)))
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        write_lines(&mut log, &refs);
        assert!(log_files(&path).len() > 2, "{:?}", log_files(&path));
        let pending = std::future::pending::<()>;

        let all = collect(read(path.clone(), LogOptions::default(), pending())).await;
        let got: Vec<&str> = all.lines().collect();
        // Rotation dropped the oldest; what is kept is in order and ends with the newest line.
        assert!(got.len() >= 7 && got.len() < 30, "{}", got.len());
        assert_eq!(got.last(), Some(&refs[29]));
        assert!(got.windows(2).all(|w| w[0] < w[1]));

        let tail = LogOptions {
            tail_lines: Some(3),
            ..LogOptions::default()
        };
        let text = collect(read(path.clone(), tail, pending())).await;
        assert_eq!(text, format!("{}\n{}\n{}\n", refs[27], refs[28], refs[29]));
        let none = LogOptions {
            tail_lines: Some(0),
            ..LogOptions::default()
        };
        assert_eq!(collect(read(path.clone(), none, pending())).await, "");

        let limited = LogOptions {
            limit_bytes: Some(10),
            ..LogOptions::default()
        };
        assert_eq!(
            collect(read(path.clone(), limited, pending())).await.len(),
            10
        );
    }

    #[tokio::test]
    async fn since_keeps_later_records_and_timestamps_prefix_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        std::fs::write(
            &path,
            "2024-01-01T00:00:00.5Z stdout F old\n\
             2024-01-01T00:00:02.000000001Z stderr P new-\n\
             2024-01-01T00:00:02.000000002Z stderr F er\n",
        )
        .unwrap();
        let options = LogOptions {
            since: Some("2024-01-01T00:00:01Z".parse().unwrap()),
            timestamps: true,
            ..LogOptions::default()
        };
        let text = collect(read(path, options, std::future::pending())).await;
        assert_eq!(
            text,
            "2024-01-01T00:00:02.000000001Z new-2024-01-01T00:00:02.000000002Z er\n"
        );
    }

    #[tokio::test]
    async fn follow_reads_across_rotation_until_the_container_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut log = writer(&path, 150, 3);
        write_lines(&mut log, &["first"]);
        let (end_tx, end_rx) = tokio::sync::oneshot::channel::<()>();
        let options = LogOptions {
            follow: true,
            tail_lines: Some(1),
            ..LogOptions::default()
        };
        let mut rx = read(path.clone(), options, async {
            let _ = end_rx.await;
        });
        let mut text = String::from_utf8(rx.recv().await.unwrap().unwrap()).unwrap();
        assert_eq!(text, "first\n");
        // Enough lines to rotate the live file several times while it is followed; each line is written
        // once the one before it has arrived.
        let lines: Vec<String> = (0..8)
            .map(|i| format!("later {i} {}", "y".repeat(40)))
            .collect();
        for line in &lines {
            write_lines(&mut log, &[line]);
            while !text.contains(line.as_str()) {
                let piece = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .expect("the followed line arrives")
                    .unwrap()
                    .unwrap();
                text += std::str::from_utf8(&piece).unwrap();
            }
        }
        assert_eq!(log_files(&path).len(), 3);
        write_lines(&mut log, &["last"]);
        end_tx.send(()).unwrap();
        text += &collect(rx).await;
        let expected: String = std::iter::once("first".to_string())
            .chain(lines.iter().cloned())
            .chain(std::iter::once("last".to_string()))
            .map(|l| l + "\n")
            .collect();
        assert_eq!(text, expected);
    }
}
