//! The OpenAI-compatible provider against a canned HTTP server on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use upsell_core::agent::InferenceConfig;
use upsell_core::message::StopReason;
use upsell_core::ports::{ChatMessage, ChatRole, ConverseRequest, ModelProvider};
use upsell_models::openai::OpenAiCompatible;

/// Serves one request with `status` and `body`; sends the request (head + body) back.
fn serve_once(status: u16, body: &'static str) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        let mut len = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut buf = vec![0; len];
        reader.read_exact(&mut buf).unwrap();
        tx.send(format!("{head}{}", String::from_utf8(buf).unwrap()))
            .unwrap();
        let mut s = stream;
        write!(
            s,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    (format!("http://{addr}"), rx)
}

fn request() -> ConverseRequest {
    ConverseRequest {
        model_id: "amazon.nova-pro-v1:0".into(),
        system: "You write SMS.".into(),
        messages: vec![ChatMessage {
            role: ChatRole::User,
            text: "Write one.".into(),
        }],
        inference: InferenceConfig {
            temperature: 0.2,
            top_p: Some(0.9),
            max_tokens: 300,
        },
    }
}

#[tokio::test]
async fn chat_completion_round_trip() {
    let (url, rx) = serve_once(
        200,
        r#"{"choices":[{"message":{"role":"assistant","content":"Hi Dana"},"finish_reason":"length"}],"usage":{"prompt_tokens":12,"completion_tokens":3}}"#,
    );
    let model = OpenAiCompatible::new(format!("{url}/"))
        .with_model("llama3.2:3b")
        .with_api_key("k");
    let out = model.converse(&request()).await.unwrap();
    assert_eq!(out.text, "Hi Dana");
    assert_eq!((out.usage.input_tokens, out.usage.output_tokens), (12, 3));
    assert_eq!(out.stop_reason, StopReason::MaxTokens);
    let sent = rx.recv().unwrap();
    assert!(sent.starts_with("POST /v1/chat/completions "), "{sent}");
    assert!(
        sent.to_ascii_lowercase()
            .contains("authorization: bearer k"),
        "{sent}"
    );
    let body: serde_json::Value =
        serde_json::from_str(&sent[sent.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["model"], "llama3.2:3b");
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "Write one.");
    assert_eq!(body["max_tokens"], 300);
    assert_eq!(body["stream"], false);
}

#[tokio::test]
async fn http_errors_map_to_stable_model_errors() {
    let cases: [(u16, &'static str, &str); 5] = [
        (429, r#"{"error":"slow down"}"#, "ModelThrottled"),
        (503, r#"{"error":"loading"}"#, "ModelTransient"),
        (404, r#"{"error":"model not found"}"#, "InvalidRequest"),
        (200, r#"{"choices":[]}"#, "ModelOutputInvalid"),
        (200, "not json", "ModelOutputInvalid"),
    ];
    for (status, body, want) in cases {
        let (url, _rx) = serve_once(status, body);
        let err = OpenAiCompatible::new(url)
            .converse(&request())
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), want, "{status} {body}: {err}");
    }
    // Nothing listens on this port: a connection failure is transient.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = OpenAiCompatible::new(format!("http://127.0.0.1:{port}"))
        .converse(&request())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "ModelTransient", "{err}");
}
