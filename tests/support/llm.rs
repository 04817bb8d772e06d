//! An OpenAI-compatible chat-completions fake (actix-web on port 0): it checks each request
//! like a provider would (`Authorization: Bearer`, the model, a system and a user message),
//! records it, and plays back a scripted answer: normal JSON, streamed SSE chunks ending in
//! `[DONE]`, a slow answer, 429 with `Retry-After`, 500, or malformed content.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

/// The key the fake accepts.
pub const KEY: &str = "sk-test-briefing-0123456789";
/// The model the fake serves.
pub const MODEL: &str = "briefing-test-model";

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A JSON completion with the briefing and usage.
    Normal,
    /// The same briefing streamed as SSE `data:` chunks, usage last, then `[DONE]`.
    Streamed,
    /// A normal answer after this long.
    Slow(Duration),
    /// 429, with `Retry-After` seconds if given.
    RateLimited(Option<u64>),
    /// 500.
    ServerError,
    /// A 200 whose content is not the JSON briefing.
    Malformed,
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// The `Authorization` header.
    pub auth: Option<String>,
    /// The JSON body.
    pub body: Value,
}

impl Received {
    /// The user message (the rendered transcript).
    pub fn user_message(&self) -> String {
        self.body["messages"][1]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

#[derive(Default)]
struct Shared {
    script: VecDeque<Answer>,
    fallback: Option<Answer>,
    received: Vec<Received>,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeLlm {
    /// `http://127.0.0.1:PORT/v1` (the `LLM_BASE_URL`).
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
}

/// The briefing every successful answer carries.
pub fn briefing() -> Value {
    json!({
        "reason": "Charged twice for the March invoice",
        "customerDetails": ["Ann Lee", "card [card]"],
        "tried": ["Agent checked the statement: both charges are there"],
        "promised": ["Refund of the second charge within 5 days"],
        "nextStep": "Ann asks whether the late fee can be waived",
        "sentiment": "negative",
        "urgency": "high",
        "summaryText": "LLM: Ann Lee was charged twice for March; a refund is promised; she wants the late fee waived.",
        "whisperText": "Ann Lee was charged twice in March. A refund is promised. She wants the late fee waived.",
        "script": "Hi, I have Ann on hold: double charge in March, refund promised, asks about the late fee."
    })
}

fn usage() -> Value {
    json!({ "prompt_tokens": 321, "completion_tokens": 87, "total_tokens": 408 })
}

async fn completions(
    req: HttpRequest,
    body: web::Json<Value>,
    shared: web::Data<Arc<Mutex<Shared>>>,
) -> HttpResponse {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = body.into_inner();
    let answer = {
        let mut s = shared.lock().unwrap();
        s.received.push(Received {
            at: Instant::now(),
            auth: auth.clone(),
            body: body.clone(),
        });
        s.script
            .pop_front()
            .or_else(|| s.fallback.clone())
            .unwrap_or(Answer::Normal)
    };
    if auth.as_deref() != Some(&format!("Bearer {KEY}")) {
        return HttpResponse::Unauthorized()
            .json(json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}));
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    if body["model"] != MODEL
        || messages.len() != 2
        || messages[0]["role"] != "system"
        || messages[1]["role"] != "user"
    {
        return HttpResponse::BadRequest().json(
            json!({"error": {"message": "bad model or messages", "type": "invalid_request_error"}}),
        );
    }
    let content = briefing().to_string();
    let normal = || {
        HttpResponse::Ok().json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": MODEL,
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "stop" }],
            "usage": usage(),
        }))
    };
    match answer {
        Answer::Normal => normal(),
        Answer::Slow(d) => {
            tokio::time::sleep(d).await;
            normal()
        }
        Answer::Streamed => {
            let chars: Vec<char> = content.chars().collect();
            let mut sse = String::new();
            for piece in chars.chunks(chars.len() / 3 + 1) {
                let piece: String = piece.iter().collect();
                let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
                sse.push_str(&format!("data: {chunk}\n\n"));
            }
            let last = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage()});
            sse.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .body(sse)
        }
        Answer::RateLimited(after) => {
            let mut r = HttpResponse::TooManyRequests();
            if let Some(s) = after {
                r.insert_header(("retry-after", s.to_string()));
            }
            r.json(json!({"error": {"message": "Rate limit reached", "type": "requests"}}))
        }
        Answer::ServerError => HttpResponse::InternalServerError()
            .json(json!({"error": {"message": "The server had an error", "type": "server_error"}})),
        Answer::Malformed => HttpResponse::Ok().json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": MODEL,
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": "Sure! Here is a summary: the customer called." }, "finish_reason": "stop" }],
        })),
    }
}

impl FakeLlm {
    /// Starts the fake in the current actix system.
    pub fn start() -> FakeLlm {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the LLM fake");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let data = web::Data::new(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/v1/chat/completions", web::post().to(completions))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("LLM fake listens")
        .run();
        actix_web::rt::spawn(server);
        FakeLlm {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            shared,
        }
    }

    /// Answers the next requests with these, in order.
    pub fn script(&self, answers: &[Answer]) {
        self.shared
            .lock()
            .unwrap()
            .script
            .extend(answers.iter().cloned());
    }

    /// Answers every request after the script with this.
    pub fn always(&self, answer: Answer) {
        self.shared.lock().unwrap().fallback = Some(answer);
    }

    /// The requests so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    /// The server settings pointing at this fake (the key, the model, no streaming unless
    /// `stream`, the given per-attempt timeout and retries).
    pub fn env(&self, stream: bool, timeout_secs: f64, retries: u32) -> Vec<(String, String)> {
        [
            ("LLM_BASE_URL", self.base_url.clone()),
            ("LLM_MODEL", MODEL.to_string()),
            ("LLM_API_KEY", KEY.to_string()),
            ("LLM_STREAM", stream.to_string()),
            ("LLM_TIMEOUT", timeout_secs.to_string()),
            ("LLM_RETRIES", retries.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}
