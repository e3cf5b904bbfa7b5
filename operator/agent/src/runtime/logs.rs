//! Container logs in the CRI format the kubelet reads (`kubectl logs`): one record per line,
//! `2026-11-27T19:00:00.123456789Z stdout F text`, with `P` for a piece of a line longer than
//! [`MAX_LINE`] (the rest follows in the next records) and `F` for the piece that ends it. The file is
//! rotated by size: `path` → `path.1` → … → `path.N-1`, the oldest dropped. Written by the shim only.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::config::LogConfig;

/// Lines longer than this are split into partial records (the kubelet's and containerd's 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// Which of the container's output streams a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends CRI records to a log file and rotates it.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
}

impl LogWriter {
    pub fn open(path: &Path, config: &LogConfig) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            max_size: config.max_size,
            max_files: config.max_files,
        })
    }

    /// Writes one record; `partial` marks a piece of a longer line.
    pub fn record(&mut self, stream: Stream, partial: bool, content: &[u8]) -> io::Result<()> {
        let now = jiff::Timestamp::now();
        let mut line = Vec::with_capacity(content.len() + 48);
        write!(
            line,
            "{}.{:09}Z {} {} ",
            now.strftime("%Y-%m-%dT%H:%M:%S"),
            now.subsec_nanosecond(),
            stream.as_str(),
            if partial { 'P' } else { 'F' }
        )?;
        line.extend_from_slice(content);
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        if self.size >= self.max_size {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let rotated = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.max_files <= 1 {
            self.file.set_len(0)?;
        } else {
            let _ = fs::remove_file(rotated(self.max_files - 1));
            for n in (1..self.max_files - 1).rev() {
                match fs::rename(rotated(n), rotated(n + 1)) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                    _ => {}
                }
            }
            fs::rename(&self.path, rotated(1))?;
            self.file = open_append(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Cuts one stream's bytes into lines as they arrive, in whatever pieces the pipe delivers them.
#[derive(Debug)]
pub struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            pending: Vec::new(),
        }
    }

    pub fn stream(&self) -> Stream {
        self.stream
    }

    /// Records every complete line in `data`, and pieces of [`MAX_LINE`] bytes of a line that grows past it.
    pub fn feed(&mut self, data: &[u8], log: &mut LogWriter) -> io::Result<()> {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(newline) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let end = start + newline;
            let pieces: Vec<&[u8]> = chunks(&self.pending[start..end]).collect();
            // The last piece of a line is the full record; the ones before it are partial.
            for (i, piece) in pieces.iter().enumerate() {
                log.record(self.stream, i + 1 < pieces.len(), piece)?;
            }
            start = end + 1;
        }
        self.pending.drain(..start);
        while self.pending.len() >= MAX_LINE {
            log.record(self.stream, true, &self.pending[..MAX_LINE])?;
            self.pending.drain(..MAX_LINE);
        }
        Ok(())
    }

    /// The stream ended: a last line without a newline is still a line.
    pub fn finish(&mut self, log: &mut LogWriter) -> io::Result<()> {
        if !self.pending.is_empty() {
            log.record(self.stream, false, &self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }
}

/// A line in pieces of at most [`MAX_LINE`] bytes; an empty line is one empty piece.
fn chunks(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let empty: &[u8] = &[];
    let first = line.is_empty().then_some(empty);
    first.into_iter().chain(line.chunks(MAX_LINE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &Path, max_size: u64, max_files: u32) -> LogWriter {
        LogWriter::open(
            &dir.join("c.log"),
            &LogConfig {
                path: None,
                max_size,
                max_files,
            },
        )
        .unwrap()
    }

    /// (stream, tag, content) of each record in `text`, checking the timestamp's shape on the way.
    fn records(text: &str) -> Vec<(String, String, String)> {
        text.lines()
            .map(|line| {
                let mut fields = line.splitn(4, ' ');
                let time = fields.next().unwrap();
                assert_eq!(time.len(), "2026-11-27T19:00:00.123456789Z".len(), "{time}");
                assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
                time.parse::<jiff::Timestamp>().unwrap();
                let stream = fields.next().unwrap().to_string();
                let tag = fields.next().unwrap().to_string();
                (stream, tag, fields.next().unwrap_or("").to_string())
            })
            .collect()
    }

    #[test]
    fn lines_arriving_in_pieces_are_recorded_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = writer(dir.path(), 1 << 20, 2);
        let mut out = LineSplitter::new(Stream::Stdout);
        let mut err = LineSplitter::new(Stream::Stderr);
        out.feed(b"hel", &mut log).unwrap();
        err.feed(b"oops\n", &mut log).unwrap();
        out.feed(b"lo\n\nworld\nlast", &mut log).unwrap();
        out.finish(&mut log).unwrap();
        let text = fs::read_to_string(dir.path().join("c.log")).unwrap();
        let expected = [
            ("stderr", "F", "oops"),
            ("stdout", "F", "hello"),
            ("stdout", "F", ""),
            ("stdout", "F", "world"),
            ("stdout", "F", "last"),
        ];
        let got = records(&text);
        let got: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn long_lines_are_split_into_partial_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = writer(dir.path(), 1 << 20, 2);
        let mut out = LineSplitter::new(Stream::Stdout);
        let mut line = vec![b'a'; MAX_LINE + 10];
        line.push(b'\n');
        out.feed(&line[..100], &mut log).unwrap();
        out.feed(&line[100..], &mut log).unwrap();
        let got = records(&fs::read_to_string(dir.path().join("c.log")).unwrap());
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].1.as_str(), got[0].2.len()), ("P", MAX_LINE));
        assert_eq!((got[1].1.as_str(), got[1].2.len()), ("F", 10));
    }

    #[test]
    fn the_file_is_rotated_by_size_keeping_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = writer(dir.path(), 200, 3);
        let mut out = LineSplitter::new(Stream::Stdout);
        for i in 0..40 {
            out.feed(
                format!("line {i:02} {}\n", "x".repeat(40)).as_bytes(),
                &mut log,
            )
            .unwrap();
        }
        let path = dir.path().join("c.log");
        let mut files: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files, ["c.log", "c.log.1", "c.log.2"]);
        for name in ["c.log.1", "c.log.2"] {
            let size = fs::metadata(dir.path().join(name)).unwrap().len();
            assert!((200..300).contains(&size), "{name}: {size} bytes");
        }
        // The newest line is in the live file, and no line is cut by a rotation.
        let live = records(&fs::read_to_string(&path).unwrap());
        let newest = records(&fs::read_to_string(dir.path().join("c.log.1")).unwrap());
        assert!(
            live.iter()
                .chain(&newest)
                .any(|r| r.2.starts_with("line 39"))
        );
        assert!(newest.iter().all(|r| r.1 == "F" && r.2.len() == 48));
    }
}
