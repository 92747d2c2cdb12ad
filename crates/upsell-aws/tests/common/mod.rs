//! Shared test helpers: contexts against moto server or a canned-response HTTP server.
#![allow(dead_code)]

pub mod cli;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use upsell_aws::{AwsContext, AwsContextBuilder};

/// The moto endpoint from `UPSELL_MOTO_ENDPOINT`, or `None` after saying plainly that the
/// test is skipped. With `UPSELL_REQUIRE_MOTO` set (CI) a missing endpoint fails the test.
pub fn moto_endpoint(test: &str) -> Option<String> {
    match std::env::var("UPSELL_MOTO_ENDPOINT") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ => {
            assert!(
                std::env::var_os("UPSELL_REQUIRE_MOTO").is_none(),
                "{test}: UPSELL_REQUIRE_MOTO is set but UPSELL_MOTO_ENDPOINT is not (run `bash .ci/test`)"
            );
            eprintln!(
                "SKIPPED {test}: UPSELL_MOTO_ENDPOINT is not set (start `moto_server -H 127.0.0.1 -p 5000` and set it, or run `bash .ci/test`)"
            );
            None
        }
    }
}

/// A builder pointed at `endpoint` with fake credentials and no SDK retries.
pub fn builder(endpoint: &str) -> AwsContextBuilder {
    AwsContext::builder()
        .endpoint_url(endpoint)
        .region("us-east-1")
        .test_credentials()
        .max_attempts(1)
}

/// A unique resource name for one test run.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// One canned HTTP response.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (to exercise client timeouts).
    pub delay: Duration,
}

impl Canned {
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Canned {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// An AWS JSON error: `x-amzn-errortype` header plus a message body.
    pub fn aws_error(status: u16, code: &str, message: &str) -> Self {
        let mut c = Canned::json(
            status,
            serde_json::json!({ "message": message }).to_string(),
        );
        c.headers.push((
            "x-amzn-errortype".into(),
            format!("{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        ));
        c
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {}", self.body))
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that answers with canned responses in order (the last
/// one repeats) and records every request.
pub struct CannedServer {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl CannedServer {
    pub fn start(responses: Vec<Canned>) -> CannedServer {
        assert!(!responses.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let queue = Arc::new(Mutex::new((responses, 0usize)));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let log = log.clone();
                let queue = queue.clone();
                thread::spawn(move || serve(stream, &log, &queue));
            }
        });
        CannedServer { url, received }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, log: &Mutex<Vec<Received>>, queue: &Mutex<(Vec<Canned>, usize)>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                }
                headers.push((k, v));
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        log.lock().unwrap().push(Received {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let canned = {
            let mut q = queue.lock().unwrap();
            let i = q.1.min(q.0.len() - 1);
            q.1 += 1;
            q.0[i].clone()
        };
        if !canned.delay.is_zero() {
            thread::sleep(canned.delay);
        }
        let mut response = format!(
            "HTTP/1.1 {} Canned\r\ncontent-length: {}\r\n",
            canned.status,
            canned.body.len()
        );
        for (k, v) in &canned.headers {
            response.push_str(&format!("{k}: {v}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(&canned.body);
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
