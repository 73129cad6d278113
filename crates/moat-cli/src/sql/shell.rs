//! Running statements and the interactive shell: input is gathered until a
//! `;` ends a statement (outside quotes and comments), then sent with the
//! simple query protocol, so one input may hold several statements; every
//! result set is printed, and commands print their tag.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use futures::StreamExt;
use tokio_postgres::SimpleQueryMessage;

use super::connect::{Connector, Failure, Session};
use super::format::{self, Format, ResultSet};
use super::split;

/// What to do after a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Read the next line.
    More,
    /// Quit (`\q`).
    Quit,
}

/// A connection plus the shell's settings and pending input.
pub struct Shell {
    rt: tokio::runtime::Runtime,
    connector: Connector,
    session: Option<Session>,
    format: Format,
    timing: bool,
    interactive: bool,
    buffer: String,
}

const HELP: &str = "\
Statements end with a semicolon; several may share one line.
  \\q, quit, exit    leave the shell (Ctrl-D too)
  \\timing [on|off]  show the time each input takes
  \\?                this help
Ctrl-C clears the current input.";

impl Shell {
    /// Connects.
    pub fn connect(connector: Connector, format: Format, interactive: bool) -> Result<Self, Failure> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::Other(format!("cannot start the I/O runtime: {e}")))?;
        let session = rt.block_on(connector.connect())?;
        Ok(Shell {
            rt,
            connector,
            session: Some(session),
            format,
            timing: interactive,
            interactive,
            buffer: String::new(),
        })
    }

    /// Sends `sql` (one or more statements) and prints every result.
    pub fn execute(&mut self, sql: &str) -> Result<(), Failure> {
        if self.session.as_ref().is_none_or(|s| s.client.is_closed()) {
            if let Some(why) = self.session.as_ref().and_then(|s| self.connector.lost_reason(s)) {
                why.print();
            }
            self.session = None;
            if !self.interactive {
                return Err(Failure::Other(format!(
                    "the connection to {} was closed",
                    self.connector.target.addr()
                )));
            }
            println!("# reconnecting to {}", self.connector.target.addr());
            self.session = Some(self.rt.block_on(self.connector.connect())?);
        }
        let session = self.session.as_ref().expect("connected above");
        let start = Instant::now();
        let result = self.rt.block_on(run(session, &self.connector, sql, self.format));
        if self.interactive && self.timing {
            println!("\n{}\n", format::elapsed(start.elapsed()));
        }
        let _ = std::io::stdout().flush();
        result
    }

    /// True when a statement has been started but not ended.
    pub fn pending(&self) -> bool {
        !split::is_blank(&self.buffer)
    }

    /// Drops the pending input (Ctrl-C).
    pub fn clear(&mut self) {
        self.buffer.clear();
    }

    /// Takes one line of input: a shell command, or SQL that runs once a `;`
    /// ends it.
    pub fn feed(&mut self, line: &str) -> Result<Step, Failure> {
        if !self.pending() {
            let cmd = line.trim();
            if cmd.starts_with('\\') {
                self.buffer.clear();
                return self.command(cmd);
            }
            if self.interactive && matches!(cmd.trim_end_matches(';').trim(), "quit" | "exit") {
                return Ok(Step::Quit);
            }
        }
        if !self.buffer.is_empty() {
            self.buffer.push('\n');
        }
        self.buffer.push_str(line);
        if let Some(&end) = split::terminators(&self.buffer).last() {
            let sql = self.buffer[..end].to_string();
            let rest = &self.buffer[end..];
            self.buffer = if split::is_blank(rest) {
                String::new()
            } else {
                rest.trim_start().to_string()
            };
            self.execute(&sql)?;
        } else if !self.pending() {
            self.buffer.clear();
        }
        Ok(Step::More)
    }

    /// Runs what is left at the end of the input (a last statement without `;`).
    pub fn finish(&mut self) -> Result<(), Failure> {
        if self.pending() {
            let sql = std::mem::take(&mut self.buffer);
            self.execute(&sql)?;
        }
        Ok(())
    }

    fn command(&mut self, cmd: &str) -> Result<Step, Failure> {
        let mut words = cmd.split_whitespace();
        match (words.next().unwrap_or_default(), words.next()) {
            ("\\q", _) => Ok(Step::Quit),
            ("\\timing", arg) => {
                self.timing = match arg {
                    Some("on") => true,
                    Some("off") => false,
                    None => !self.timing,
                    Some(other) => {
                        return Err(Failure::Other(format!("\\timing takes on or off, not {other:?}")));
                    }
                };
                println!("Timing is {}.", if self.timing { "on" } else { "off" });
                Ok(Step::More)
            }
            ("\\?" | "\\h" | "\\help", _) => {
                println!("{HELP}");
                Ok(Step::More)
            }
            (other, _) => Err(Failure::Other(format!("unknown command {other}; type \\? for help"))),
        }
    }

    /// The interactive loop: line editing, history, `user@host/db> ` and `  -> `.
    pub fn interactive(&mut self) -> Result<(), Failure> {
        use rustyline::error::ReadlineError;
        let t = &self.connector.target;
        let prompt = format!("{}@{}/{}> ", t.user, t.host, t.database);
        let tls = self
            .session
            .as_ref()
            .and_then(|s| s.shared.tls.lock().ok().and_then(|g| g.clone()))
            .unwrap_or_else(|| "TLS".into());
        println!("# Welcome to the moat SQL shell.");
        println!("# All statements must be terminated by a semicolon.");
        println!("# To exit, type: \\q.");
        println!("#");
        println!(
            "# Connected to {} as {} ({}), {tls}.",
            t.addr(),
            t.user,
            self.connector.login_kind()
        );
        println!("#");
        let config = rustyline::Config::builder()
            .auto_add_history(false)
            .history_ignore_space(true)
            .max_history_size(1000)
            .map_err(|e| Failure::Other(e.to_string()))?
            .build();
        let mut rl =
            rustyline::DefaultEditor::with_config(config).map_err(|e| Failure::Other(format!("line editor: {e}")))?;
        let history = history_path();
        if let Some(h) = &history {
            let _ = rl.load_history(h);
        }
        let mut entry = String::new();
        loop {
            let p = if self.pending() { "  -> " } else { prompt.as_str() };
            match rl.readline(p) {
                Ok(line) => {
                    if !entry.is_empty() {
                        entry.push(' ');
                    }
                    entry.push_str(line.trim());
                    let step = self.feed(&line);
                    if !self.pending() {
                        if !entry.trim().is_empty() {
                            let _ = rl.add_history_entry(entry.trim());
                            if let Some(h) = &history {
                                let _ = rl.append_history(h);
                            }
                        }
                        entry.clear();
                    }
                    match step {
                        Ok(Step::Quit) => break,
                        Ok(Step::More) => {}
                        Err(f) => f.print(),
                    }
                }
                Err(ReadlineError::Interrupted) => {
                    self.clear();
                    entry.clear();
                }
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(Failure::Other(format!("reading input: {e}"))),
            }
        }
        Ok(())
    }
}

/// `~/.moat_sql_history` (rustyline writes it 0600).
fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".moat_sql_history"))
}

/// Sends one simple query and prints each result as it completes.
async fn run(session: &Session, connector: &Connector, sql: &str, format: Format) -> Result<(), Failure> {
    let explain = |e: tokio_postgres::Error| {
        if e.as_db_error().is_none() {
            if let Some(why) = connector.lost_reason(session) {
                return why;
            }
        }
        connector.explain(&e)
    };
    session.shared.tags.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let stream = session.client.simple_query_raw(sql).await.map_err(explain)?;
    let mut stream = std::pin::pin!(stream);
    let mut current: Option<ResultSet> = None;
    let mut out = std::io::stdout();
    while let Some(item) = stream.next().await {
        match item.map_err(explain)? {
            SimpleQueryMessage::RowDescription(cols) => {
                current = Some(ResultSet {
                    columns: cols.iter().map(|c| c.name().to_string()).collect(),
                    rows: Vec::new(),
                });
            }
            SimpleQueryMessage::Row(row) => {
                let rs = current.get_or_insert_with(|| ResultSet {
                    columns: row.columns().iter().map(|c| c.name().to_string()).collect(),
                    rows: Vec::new(),
                });
                rs.rows
                    .push((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect());
            }
            SimpleQueryMessage::CommandComplete(n) => {
                let tag = session
                    .shared
                    .tags
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front();
                let text = match current.take() {
                    Some(rs) => format::render(&rs, format),
                    None => match tag {
                        Some(t) if t.is_empty() => String::new(),
                        Some(t) => format!("{t}\n"),
                        None => format!("OK {n}\n"),
                    },
                };
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            _ => {}
        }
    }
    Ok(())
}
