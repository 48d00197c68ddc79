//! Public status pages (opt-in): `GET /status/SLUG` (HTML, no login, no script) and
//! `GET /status/SLUG.json`. A page shows the nodes with one of its tags: each one's
//! display name, status, 90 days of availability, and any outage or maintenance going on.
//! Never ids, tags, facts or addresses, and hostnames only if the page allows them.
//! The rendering is cached for [`CACHE_MS`], so a flood of visitors costs a lookup each.

use super::fleet::parse_known_body;
use super::{audit, ApiError, Context, Handled, Reply, Request, User};
use crate::alerts::Holds;
use crate::api::uptime::{ratio_over, spans};
use crate::model::{NodeRecord, Status, StatusPageRecord};
use crate::store::{ReadTxn, RwTxn, Txn};
use crate::uptime::{self, Window};
use hearth_wire::format_rfc3339;
use miniserde::{json, Serialize};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;

/// How long a rendered page is served again before it is made anew.
pub const CACHE_MS: i64 = 10_000;

/// No script at all, styles from `/status.css` only.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

pub const STATUS_CSS: &str = include_str!("../../web/status.css");

/// Rendered pages by slug and form, with when each was made.
#[derive(Default)]
pub struct Cache {
    pages: Mutex<HashMap<(String, bool), (i64, Reply)>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("status::Cache")
    }
}

/// A slug: 1 to 64 lower-case letters, digits or `-`.
pub fn valid_slug(slug: &str) -> bool {
    (1..=64).contains(&slug.len()) && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// One node as a status page shows it: nothing else about it leaves.
#[derive(Serialize)]
struct PublicNode {
    name: String,
    /// Only on pages that allow it.
    hostname: Option<String>,
    /// `up`, `down`, `stopped` or `unknown` (never heard from).
    status: &'static str,
    uptime_90d: Option<f64>,
    /// The last 90 days, oldest first (UTC days); `null` for a day that did not count.
    days: Vec<Option<f64>>,
    /// Since when it is down, while it is.
    down_since: Option<String>,
    /// Until when a maintenance window covers it, while one does.
    maintenance_until: Option<String>,
}

#[derive(Serialize)]
struct PublicPage {
    title: String,
    generated_at: String,
    nodes: Vec<PublicNode>,
}

/// `GET /status/SLUG` and `/status/SLUG.json`.
pub(super) fn page<T: ReadTxn>(path: &str, txn: &Txn<T>, ctx: &Context) -> Handled {
    let (slug, as_json) = match path.strip_suffix(".json") {
        Some(slug) => (slug, true),
        None => (path, false),
    };
    let not_found = || ApiError::not_found(format!("there is no status page at /status/{path}"));
    if !valid_slug(slug) {
        return Err(not_found().into());
    }
    let Some(record) = txn.status_page(slug)? else { return Err(not_found().into()) };
    let key = (slug.to_owned(), as_json);
    if let Some((made, reply)) = ctx.status_pages.pages.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        if ctx.now_ms >= *made && ctx.now_ms - made < CACHE_MS {
            return Ok(reply.clone());
        }
    }
    let data = gather(&record, txn, ctx)?;
    let reply = if as_json {
        Reply::bytes(200, "application/json", json::to_string(&data).into_bytes())
    } else {
        Reply::bytes(200, "text/html; charset=utf-8", html(&data).into_bytes())
            .with_header("Content-Security-Policy", CSP)
            .with_header("X-Content-Type-Options", "nosniff")
            .with_header("Referrer-Policy", "no-referrer")
    }
    .with_header("Cache-Control", "public, max-age=10");
    let mut pages = ctx.status_pages.pages.lock().unwrap_or_else(|p| p.into_inner());
    // Pages are few (an operator makes each); a bound all the same.
    if pages.len() > 256 {
        pages.clear();
    }
    pages.insert(key, (ctx.now_ms, reply.clone()));
    Ok(reply)
}

fn gather<T: ReadTxn>(page: &StatusPageRecord, txn: &Txn<T>, ctx: &Context) -> Result<PublicPage, crate::store::Error> {
    let now = ctx.now_ms;
    let mut selected: Vec<NodeRecord> = Vec::new();
    txn.each_node(|node| {
        if node.all_tags().iter().any(|t| page.tags.contains(t)) {
            selected.push(node);
        }
    })?;
    selected.sort_by_key(|n| n.name.to_lowercase());
    let holds = Holds::load(txn)?;
    let mut nodes = Vec::with_capacity(selected.len());
    for node in &selected {
        let spans = spans(txn, node, now, &holds)?;
        let status = match node.status(now, ctx.status_grace_ms(node)) {
            Status::Online | Status::Late => "up",
            Status::Offline => "down",
            Status::Stopped => "stopped",
            Status::Pending => "unknown",
        };
        let maintenance = holds.hold(node, now).filter(|h| h.kind == crate::maintenance::HoldKind::Maintenance);
        nodes.push(PublicNode {
            name: node.name.clone(),
            hostname: page.show_hostnames.then(|| node.hostname.clone()),
            status,
            uptime_90d: ratio_over(node, &spans, Window::Quarter, now),
            days: uptime::daily(uptime::counted_from(node), &spans, now),
            down_since: (status == "down").then(|| node.down_from.or(node.last_seen).map(format_rfc3339)).flatten(),
            maintenance_until: maintenance.map(|h| format_rfc3339(h.until)),
        });
    }
    Ok(PublicPage { title: page.title.clone(), generated_at: format_rfc3339(now), nodes })
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "no data".to_owned(), |r| format!("{:.2} %", r * 100.0))
}

fn html(page: &PublicPage) -> String {
    let title = escape(&page.title);
    let down = page.nodes.iter().filter(|n| n.status == "down").count();
    let (class, summary) = match down {
        0 => ("ok", "All systems up".to_owned()),
        1 => ("bad", "1 system down".to_owned()),
        n => ("bad", format!("{n} systems down")),
    };
    let mut out = String::with_capacity(2048 + page.nodes.len() * 4096);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"refresh\" content=\"60\">\n<title>{title}</title>\n\
         <link rel=\"stylesheet\" href=\"/status.css\">\n</head>\n<body>\n<main>\n\
         <h1>{title}</h1>\n<p class=\"summary {class}\">{summary}</p>\n"
    );
    if page.nodes.is_empty() {
        out.push_str("<p class=\"note\">Nothing is shown on this page yet.</p>\n");
    }
    for node in &page.nodes {
        let host =
            node.hostname.as_deref().map_or_else(String::new, |h| format!("<span class=\"host\">{}</span>", escape(h)));
        let shown = match (node.status, &node.maintenance_until) {
            (_, Some(_)) => ("maintenance", "In maintenance"),
            ("up", _) => ("up", "Up"),
            ("down", _) => ("down", "Down"),
            ("stopped", _) => ("stopped", "Stopped"),
            _ => ("unknown", "No data yet"),
        };
        let _ = write!(
            out,
            "<section class=\"node\">\n<div class=\"head\"><span><span class=\"name\">{}</span>{host}</span>\
             <span class=\"state {}\">{}</span></div>\n<div class=\"bars\" aria-label=\"90 days of availability\">",
            escape(&node.name),
            shown.0,
            shown.1
        );
        for (i, day) in node.days.iter().enumerate() {
            let class = match day {
                None => "b-none",
                Some(r) if *r >= 0.9995 => "b-up",
                Some(r) if *r >= 0.95 => "b-some",
                Some(_) => "b-down",
            };
            let ago = node.days.len() - 1 - i;
            let when = match ago {
                0 => "today".to_owned(),
                1 => "yesterday".to_owned(),
                n => format!("{n} days ago"),
            };
            let _ = write!(out, "<span class=\"{class}\" title=\"{when}: {}\"></span>", percent(*day));
        }
        let _ = write!(
            out,
            "</div>\n<div class=\"scale\"><span>90 days ago</span><span>{} over 90 days</span><span>today</span></div>\n",
            percent(node.uptime_90d)
        );
        if let Some(since) = &node.down_since {
            let _ = writeln!(out, "<p class=\"note\">Down since {}.</p>", escape(since));
        }
        if let Some(until) = &node.maintenance_until {
            let _ = writeln!(out, "<p class=\"note\">In a maintenance window until {}.</p>", escape(until));
        }
        out.push_str("</section>\n");
    }
    let _ = write!(
        out,
        "<footer>Updated {} (UTC) · Hearth</footer>\n</main>\n</body>\n</html>\n",
        escape(&page.generated_at)
    );
    out
}

/// Checks a page about to be stored; an error says what to fix.
pub fn check_page(page: &StatusPageRecord) -> Result<(), String> {
    if !valid_slug(&page.slug) {
        return Err(format!("the slug {:?} is not allowed: use 1 to 64 lower-case letters, digits or `-`", page.slug));
    }
    if page.title.trim().is_empty() || page.title.chars().count() > 100 || page.title.chars().any(char::is_control) {
        return Err("the title must be 1 to 100 characters, without control characters".into());
    }
    if page.tags.is_empty() || page.tags.len() > 32 || page.tags.iter().any(|t| t.is_empty() || t.len() > 64) {
        return Err("a status page shows the nodes with one of its tags: give 1 to 32 tags".into());
    }
    Ok(())
}

/// A page as operators see it.
#[derive(Serialize)]
pub struct PageView {
    slug: String,
    title: String,
    tags: Vec<String>,
    show_hostnames: bool,
    created_by: String,
    created_at: String,
    /// Where it is served.
    url: String,
}

impl PageView {
    pub fn of(page: &StatusPageRecord) -> PageView {
        PageView {
            slug: page.slug.clone(),
            title: page.title.clone(),
            tags: page.tags.clone(),
            show_hostnames: page.show_hostnames,
            created_by: page.created_by.clone(),
            created_at: format_rfc3339(page.created_at),
            url: format!("/status/{}", page.slug),
        }
    }
}

#[derive(Serialize)]
struct PageList {
    pages: Vec<PageView>,
}

/// `GET /api/status-pages`.
pub(super) fn pages<T: ReadTxn>(txn: &Txn<T>) -> Handled {
    let pages = txn.status_pages()?.iter().map(PageView::of).collect();
    Ok(Reply::json(200, &PageList { pages }))
}

#[derive(miniserde::Deserialize, Debug, Default)]
struct PageRequest {
    slug: Option<String>,
    title: Option<String>,
    tags: Option<Vec<String>>,
    show_hostnames: Option<bool>,
}

/// `POST /api/status-pages`: a new page; an existing slug is `409`.
pub(super) fn create_page(user: &User, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let asked: PageRequest = parse_known_body(
        req,
        r#"{"slug": "home", "title": "Home lab", "tags": ["public"], "show_hostnames": false}"#,
        &["slug", "title", "tags", "show_hostnames"],
    )?;
    let page = StatusPageRecord {
        slug: asked.slug.unwrap_or_default(),
        title: asked.title.unwrap_or_default(),
        tags: asked.tags.unwrap_or_default(),
        show_hostnames: asked.show_hostnames.unwrap_or(false),
        created_by: user.name.clone(),
        created_at: ctx.now_ms,
    };
    check_page(&page).map_err(ApiError::invalid)?;
    if txn.status_page(&page.slug)?.is_some() {
        let message = format!("a status page already has the slug {}; remove it first, or pick another", page.slug);
        return Err(ApiError::new(409, "page_exists", message).into());
    }
    txn.put_status_page(&page)?;
    audit(txn, ctx, req, &user.name, "status_page_created", Some(&page.slug), describe(&page))?;
    log::info!("{} created status page /status/{}", user.name, page.slug);
    Ok(Reply::json(201, &PageView::of(&page)))
}

/// A page in a sentence, for the audit log.
pub fn describe(page: &StatusPageRecord) -> String {
    let hosts = if page.show_hostnames { ", with hostnames" } else { "" };
    format!("{:?}: nodes tagged {}{hosts}", page.title, page.tags.join(", "))
}

/// `DELETE /api/status-pages/{slug}`.
pub(super) fn remove_page(user: &User, slug: &str, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    if !txn.delete_status_page(slug)? {
        return Err(ApiError::not_found(format!("no status page has the slug {slug}")).into());
    }
    audit(txn, ctx, req, &user.name, "status_page_removed", Some(slug), String::new())?;
    Ok(Reply::json(200, &Removed { deleted: slug.to_owned() }))
}

#[derive(Serialize)]
struct Removed {
    deleted: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_plain() {
        for good in ["home", "lab-2", "a"] {
            assert!(valid_slug(good), "{good}");
        }
        for bad in ["", "Home", "a/b", "a.json", "../x", &"x".repeat(65)] {
            assert!(!valid_slug(bad), "{bad}");
        }
    }

    #[test]
    fn names_are_escaped() {
        let page = PublicPage {
            title: "<script>x</script>".into(),
            generated_at: "now".into(),
            nodes: vec![PublicNode {
                name: "a\"b<c>".into(),
                hostname: None,
                status: "down",
                uptime_90d: Some(0.5),
                days: vec![None, Some(1.0), Some(0.97), Some(0.1)],
                down_since: Some("2026-11-30T00:00:00Z".into()),
                maintenance_until: None,
            }],
        };
        let text = html(&page);
        assert!(!text.contains("<script>") && text.contains("&lt;script&gt;"), "{text}");
        assert!(text.contains("a&quot;b&lt;c&gt;"));
        assert!(text.contains("1 system down") && text.contains("50.00 %"));
        for class in ["b-none", "b-up", "b-some", "b-down"] {
            assert!(text.contains(class), "{class}");
        }
    }
}
