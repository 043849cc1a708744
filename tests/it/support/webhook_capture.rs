//! A tiny HTTP receiver that records every request: a stand-in for salve when testing the bed,
//! and for ticket/pager endpoints when testing escalation. It never interprets what it gets.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Requests larger than this are cut off; tests never need more, and a bug cannot eat memory.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// One recorded request. Header names are lower-cased.
#[derive(Clone, Debug)]
pub struct CapturedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status this receiver answered (see `set_response_status`).
    pub status: u16,
}

impl CapturedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "captured body is not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Listens on a free loopback port until dropped; answers every request with the status
/// (and body) set last.
pub struct WebhookCapture {
    port: u16,
    requests: Arc<Mutex<Vec<CapturedRequest>>>,
    response: Arc<Response>,
    accept_task: JoinHandle<()>,
}

/// What the receiver answers; changed while it runs.
struct Response {
    status: AtomicU16,
    body: Mutex<String>,
}

impl WebhookCapture {
    pub async fn start() -> WebhookCapture {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind capture listener");
        let port = listener.local_addr().expect("local_addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let response = Arc::new(Response {
            status: AtomicU16::new(200),
            body: Mutex::new(String::new()),
        });
        let accept_task = tokio::spawn(accept_loop(
            listener,
            Arc::clone(&requests),
            Arc::clone(&response),
        ));
        WebhookCapture {
            port,
            requests,
            response,
            accept_task,
        }
    }

    /// The URL of `path` on this receiver, e.g. `url("/hooks/alertmanager")`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answer later requests with this status (e.g. 500 to make the sender retry).
    pub fn set_response_status(&self, status: u16) {
        self.response.status.store(status, Ordering::SeqCst);
    }

    /// Answer later requests with this body (empty by default), e.g. an error text that
    /// quotes what the request carried, as some ticket APIs do.
    pub fn set_response_body(&self, body: &str) {
        *self.response.body.lock().expect("capture lock") = body.to_owned();
    }

    /// Everything received so far, oldest first.
    pub fn requests(&self) -> Vec<CapturedRequest> {
        self.requests.lock().expect("capture lock").clone()
    }
}

impl Drop for WebhookCapture {
    fn drop(&mut self) {
        // The shutdown path of the accept task: it holds the listener, so the port closes too.
        self.accept_task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    requests: Arc<Mutex<Vec<CapturedRequest>>>,
    response: Arc<Response>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        // One request per connection is enough; the answer says `Connection: close`.
        if let Some(request) = read_request(stream, &response).await {
            requests.lock().expect("capture lock").push(request);
        }
    }
}

/// Reads one HTTP/1.1 request with a Content-Length body (what Alertmanager and salve's
/// webhook clients send), answers it and closes. Malformed input is dropped, not recorded.
async fn read_request(mut stream: TcpStream, answer: &Response) -> Option<CapturedRequest> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(position) = find(&buffer, b"\r\n\r\n") {
            break position;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 || buffer.len() > MAX_REQUEST_BYTES {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };

    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let content_length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST_BYTES);

    let mut body = buffer.split_off(header_end + 4);
    while body.len() < content_length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    body.truncate(content_length);

    let status = answer.status.load(Ordering::SeqCst);
    let answer_body = answer.body.lock().expect("capture lock").clone();
    let response = format!(
        "HTTP/1.1 {status} Captured\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer_body}",
        answer_body.len()
    );
    // The request counts as received even if the sender hung up before reading the answer.
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    Some(CapturedRequest {
        method,
        path,
        headers,
        body,
        status,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
