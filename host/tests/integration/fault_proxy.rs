//! A TCP proxy between the host and one of its servers that a test controls: it forwards
//! bytes both ways until it is paused (the connections stay open and nothing moves: a
//! server that stalls), and forwards again when it is resumed; `pause_answers` holds only
//! what the server sends (it got the request and acted on it, but its answer is late);
//! `cut` resets every open
//! connection, dropping what a stall held back, as a stalled connection ends when it is
//! finally torn down. Faults are real: the host talks to a socket that stops answering.

use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct FaultProxy {
    /// `host:port` the host is pointed at.
    pub address: String,
    running: watch::Sender<bool>,
    /// The server-to-client direction only.
    answering: watch::Sender<bool>,
    /// Bumped by `cut`: every connection of an older generation ends.
    generation: watch::Sender<u64>,
    /// While set, new connections are closed at once: the server is unreachable.
    refusing: Arc<std::sync::atomic::AtomicBool>,
    accepting: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: &str) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let (running, flowing) = watch::channel(true);
        let (answering, answers_flowing) = watch::channel(true);
        let (generation, generations) = watch::channel(0u64);
        let target = Arc::new(target.to_string());
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refuse = refusing.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if refuse.load(std::sync::atomic::Ordering::Relaxed) {
                    drop(client);
                    continue;
                }
                let (target, flowing, answers_flowing) =
                    (target.clone(), flowing.clone(), answers_flowing.clone());
                let mut cut = generations.clone();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(target.as_str()).await {
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        tokio::select! {
                            _ = async {
                                tokio::join!(
                                    pump(client_read, server_write, flowing.clone(), None),
                                    pump(server_read, client_write, flowing, Some(answers_flowing)),
                                )
                            } => {}
                            // Dropping both halves resets the connection on both sides.
                            _ = cut.changed() => {}
                        }
                    }
                });
            }
        });
        Ok(FaultProxy {
            address,
            running,
            answering,
            generation,
            refusing,
            accepting,
        })
    }

    /// Stops moving bytes; connections stay open, so the other side waits.
    pub fn pause(&self) {
        let _ = self.running.send(false);
    }

    /// Holds the server's answers only: requests still reach it and take effect.
    pub fn pause_answers(&self) {
        let _ = self.answering.send(false);
    }

    /// Moves bytes both ways again.
    pub fn resume(&self) {
        let _ = self.running.send(true);
        let _ = self.answering.send(true);
    }

    /// Resets every open connection; what a pause held back is lost with it.
    pub fn cut(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// The server goes away: open connections are reset and new ones closed at once.
    pub fn down(&self) {
        self.refusing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.cut();
    }

    pub fn up(&self) {
        self.refusing
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Copies `from` to `to`, holding each chunk while the proxy is paused (or, for the answer
/// direction, while answers are held).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut flowing: watch::Receiver<bool>,
    mut answers_flowing: Option<watch::Receiver<bool>>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if flowing.wait_for(|flowing| *flowing).await.is_err() {
            return;
        }
        if let Some(answers) = answers_flowing.as_mut() {
            if answers.wait_for(|flowing| *flowing).await.is_err() {
                return;
            }
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
