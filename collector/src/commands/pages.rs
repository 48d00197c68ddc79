//! `statuspage create|list|remove`: public status pages from the command line, checked as
//! the API checks them (`api::status::check_page`).

use super::{cli_audit, open_existing_store, Failure};
use crate::api::status::{check_page, describe};
use crate::clock::Clock;
use crate::model::StatusPageRecord;
use std::path::Path;

pub(super) fn create(
    data_dir: &Path,
    slug: String,
    title: String,
    tags: Vec<String>,
    show_hostnames: bool,
) -> Result<(), Failure> {
    let page = StatusPageRecord {
        slug,
        title,
        tags,
        show_hostnames,
        created_by: "cli".into(),
        created_at: Clock::from_env().now_ms(),
    };
    check_page(&page).map_err(Failure::Config)?;
    let store = open_existing_store(data_dir)?;
    let created = store
        .write(|txn| {
            if txn.status_page(&page.slug)?.is_some() {
                return Ok(false);
            }
            txn.put_status_page(&page)?;
            txn.put_audit(cli_audit("status_page_created", &page.slug, describe(&page)))?;
            Ok(true)
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    if !created {
        return Err(Failure::Failed(format!(
            "a status page already has the slug {}; remove it first (`hearth-collector statuspage remove {}`)",
            page.slug, page.slug
        )));
    }
    println!("/status/{}", page.slug);
    Ok(())
}

pub(super) fn list(data_dir: &Path) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let pages = store.read(|txn| txn.status_pages()).map_err(|e| Failure::store(data_dir, e))?;
    for page in &pages {
        println!("/status/{}  {}", page.slug, describe(page));
    }
    Ok(())
}

pub(super) fn remove(data_dir: &Path, slug: &str) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let removed = store
        .write(|txn| {
            let removed = txn.delete_status_page(slug)?;
            if removed {
                txn.put_audit(cli_audit("status_page_removed", slug, String::new()))?;
            }
            Ok(removed)
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    if !removed {
        return Err(Failure::Failed(format!(
            "no status page has the slug {slug}; see `hearth-collector statuspage list`"
        )));
    }
    println!("status page /status/{slug} removed");
    Ok(())
}
