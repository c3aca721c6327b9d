//! The admin endpoints: an operator lists, requeues and purges dead
//! letters, and purges a queue, on the System's broker (whatever its
//! backend). Off unless a token is given; every request must carry it.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::broker::{Broker, BrokerError};

/// The shortest token the admin endpoints take.
pub const MIN_TOKEN_LEN: usize = 16;

/// The token every admin request must carry, as
/// `Authorization: Bearer <token>`.
#[derive(Clone)]
struct Token(Arc<str>);

impl Token {
    /// Whether `request` carries the token. The comparison takes as long
    /// whatever the first differing byte.
    fn admits(&self, request: &HttpRequest) -> bool {
        let Some(given) = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
        else {
            return false;
        };
        let (given, expected) = (given.as_bytes(), self.0.as_bytes());
        let differences = given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        differences == 0 && given.len() == expected.len()
    }
}

/// The admin endpoints, to mount with
/// `App::new().configure(microagent::web::admin(token))` (the health
/// server mounts them when the configuration has `[admin] token`):
///
/// - `GET /admin/queues/{queue}/dead-letters`: the dead letters, oldest
///   first (`[{"queue", "message", "reason", "attempts"}]`);
/// - `POST /admin/queues/{queue}/dead-letters/requeue`: sends them back to
///   their queue (`{"requeued": n}`);
/// - `DELETE /admin/queues/{queue}/dead-letters`: deletes them
///   (`{"purged": n}`);
/// - `DELETE /admin/queues/{queue}`: deletes the messages waiting in the
///   queue (`{"purged": n}`).
///
/// Every request needs `Authorization: Bearer <token>`; without it, or with
/// another token, the answer is 401 and nothing is done. A broker error is
/// 502 with its message (the URL's password redacted).
///
/// # Panics
/// When `token` is shorter than [`MIN_TOKEN_LEN`] bytes.
pub fn admin(token: impl Into<String>) -> impl Fn(&mut web::ServiceConfig) + Clone {
    let token: String = token.into();
    assert!(
        token.len() >= MIN_TOKEN_LEN,
        "microagent: an admin token has {MIN_TOKEN_LEN} bytes or more"
    );
    let token = Token(token.into());
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(token.clone()))
            .route(
                "/admin/queues/{queue}/dead-letters",
                web::get().to(dead_letters),
            )
            .route(
                "/admin/queues/{queue}/dead-letters/requeue",
                web::post().to(requeue),
            )
            .route(
                "/admin/queues/{queue}/dead-letters",
                web::delete().to(purge_dead),
            )
            .route("/admin/queues/{queue}", web::delete().to(purge));
    }
}

/// 401, asking for the token.
fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
        .json(json!({"error": "this endpoint needs the admin token"}))
}

fn failed(error: &BrokerError) -> HttpResponse {
    let status = match error {
        BrokerError::Name { .. } => actix_web::http::StatusCode::BAD_REQUEST,
        _ => actix_web::http::StatusCode::BAD_GATEWAY,
    };
    HttpResponse::build(status).json(json!({"error": error.to_string()}))
}

async fn dead_letters(
    request: HttpRequest,
    token: web::Data<Token>,
    queue: web::Path<String>,
) -> HttpResponse {
    if !token.admits(&request) {
        return unauthorized();
    }
    match Broker::current().dead_letters(&queue).await {
        Ok(letters) => HttpResponse::Ok().json(
            letters
                .iter()
                .map(|letter| {
                    json!({
                        "queue": letter.queue,
                        "message": letter.message,
                        "reason": letter.reason,
                        "attempts": letter.attempts,
                    })
                })
                .collect::<Vec<_>>(),
        ),
        Err(e) => failed(&e),
    }
}

async fn requeue(
    request: HttpRequest,
    token: web::Data<Token>,
    queue: web::Path<String>,
) -> HttpResponse {
    if !token.admits(&request) {
        return unauthorized();
    }
    match Broker::current().requeue_dead_letters(&queue).await {
        Ok(count) => HttpResponse::Ok().json(json!({"requeued": count})),
        Err(e) => failed(&e),
    }
}

async fn purge_dead(
    request: HttpRequest,
    token: web::Data<Token>,
    queue: web::Path<String>,
) -> HttpResponse {
    if !token.admits(&request) {
        return unauthorized();
    }
    match Broker::current().purge_dead_letters(&queue).await {
        Ok(count) => HttpResponse::Ok().json(json!({"purged": count})),
        Err(e) => failed(&e),
    }
}

async fn purge(
    request: HttpRequest,
    token: web::Data<Token>,
    queue: web::Path<String>,
) -> HttpResponse {
    if !token.admits(&request) {
        return unauthorized();
    }
    match Broker::current().purge(&queue).await {
        Ok(count) => HttpResponse::Ok().json(json!({"purged": count})),
        Err(e) => failed(&e),
    }
}
