//! The real `longrun` binary in a pseudo-terminal, for tests of what a
//! person at a terminal sees: its output goes through a VT100 emulator, so
//! a test reads the screen as drawn (bars redrawn in place), and can press
//! Ctrl-C (the terminal turns it into SIGINT, as a real one does).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

/// Rows and columns of the test terminal.
pub const ROWS: u16 = 30;
pub const COLUMNS: u16 = 120;

/// `longrun` running in a pseudo-terminal.
pub struct Terminal {
    child: Box<dyn Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    _master: Box<dyn MasterPty + Send>,
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
    /// Set once the program's side of the terminal closed (all read).
    drained: Arc<AtomicBool>,
}

impl Terminal {
    /// Starts `bin ARGS` with exactly the environment `env` (plus `TERM`).
    pub fn spawn(bin: &str, env: &[(String, String)], args: &[&str]) -> Terminal {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLUMNS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal opens");
        let mut command = CommandBuilder::new(bin);
        command.args(args);
        command.env_clear();
        command.cwd(std::env::temp_dir());
        command.env("TERM", "xterm-256color");
        command.env("PATH", std::env::var("PATH").unwrap_or_default());
        command.env("HOME", std::env::temp_dir().join("longrun-test-home"));
        for (name, value) in env {
            command.env(name, value);
        }
        let child = pair
            .slave
            .spawn_command(command)
            .expect("longrun starts in the terminal");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("a reader");
        let writer = pair.master.take_writer().expect("a writer");
        let screen = Arc::new(Mutex::new(vt100::Parser::new(ROWS, COLUMNS, 0)));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let drained = Arc::new(AtomicBool::new(false));
        let (screen_in, raw_in, drained_in) = (screen.clone(), raw.clone(), drained.clone());
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = reader.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                if let Ok(mut parser) = screen_in.lock() {
                    parser.process(&buffer[..read]);
                }
                if let Ok(mut raw) = raw_in.lock() {
                    raw.extend_from_slice(&buffer[..read]);
                }
            }
            drained_in.store(true, Ordering::SeqCst);
        });
        Terminal {
            child,
            writer,
            _master: pair.master,
            screen,
            raw,
            drained,
        }
    }

    /// The screen's text as drawn now, one line per row (trailing spaces
    /// cut): a line longer than the terminal is wide takes two rows.
    pub fn screen(&self) -> String {
        self.screen
            .lock()
            .map(|parser| {
                let rows: Vec<String> = parser
                    .screen()
                    .rows(0, COLUMNS)
                    .map(|row| row.trim_end().to_owned())
                    .collect();
                rows.join("\n").trim_end().to_owned()
            })
            .unwrap_or_default()
    }

    /// Everything the program wrote, escape sequences and all.
    pub fn raw_output(&self) -> String {
        self.raw
            .lock()
            .map(|raw| String::from_utf8_lossy(&raw).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the screen satisfies `check`; panics with the screen after `limit`.
    pub async fn wait_for_screen(&self, limit: Duration, what: &str, check: impl Fn(&str) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}; the screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Presses Ctrl-C.
    pub fn ctrl_c(&mut self) {
        self.writer
            .write_all(&[0x03])
            .expect("the terminal takes input");
        self.writer.flush().expect("flushed");
    }

    /// Waits for the program to exit and everything it wrote to be read;
    /// its exit code, or `None` after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<u32> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut code = None;
        while tokio::time::Instant::now() < deadline {
            if code.is_none()
                && let Ok(Some(status)) = self.child.try_wait()
            {
                code = Some(status.exit_code());
            }
            if code.is_some() && self.drained.load(Ordering::SeqCst) {
                return code;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
