//! The podcasts app: Modal's podcast transcriber, on this platform.
//!
//! - `fetch_episodes` (scheduled) reads the feed (a mounted sample at
//!   `/feed/episodes.json`, or `FEED_URL` over outbound HTTP with the API
//!   key of the `podcast-feed` secret), stores each podcast with
//!   `populate_podcast_metadata` and transcribes the new episodes with
//!   `transcribe_episode`, which maps `transcribe_segment` over the
//!   episode's segments (a deterministic stand-in for a speech model:
//!   the sample's "audio" is text).
//! - `refresh_index` (scheduled) builds the search index from the
//!   transcripts; `search_podcast` answers a query from it.
//! - `web` serves the frontend from the mount at `/assets` and a JSON API
//!   under `/api/` (`search?q=`, `podcasts`, `episodes/ID`, `status`).
//!
//! Everything lives in the app's key-value buckets (`podcasts`,
//! `episodes`, `transcripts`, `index`), so it survives redeploys and
//! restarts. Deploy it with:
//!
//! ```text
//! modal secret create podcast-feed PODCAST_API_KEY=...
//! modal deploy podcasts.wasm --mount examples/podcasts/frontend:/assets \
//!     --mount examples/podcasts/feed:/feed
//! modal schedule run podcasts fetch_episodes
//! modal schedule run podcasts refresh_index
//! modal call podcasts search_podcast '"component model"'
//! ```

use modal_guest::Dict;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Where the sample feed is mounted.
const SAMPLE_FEED: &str = "/feed/episodes.json";
/// Words per segment handed to one `transcribe_segment` call.
const SEGMENT_WORDS: usize = 40;
/// Words spoken per second, for the stand-in timestamps.
const WORDS_PER_SECOND: f64 = 2.5;
/// Index entries written per batch.
const BATCH: usize = 200;
/// Results `search_podcast` returns at most.
const MAX_RESULTS: usize = 10;

/// The feed: podcasts with their episodes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Feed {
    /// Every podcast of the feed.
    pub podcasts: Vec<FeedPodcast>,
}

/// One podcast of the feed.
#[derive(Debug, Serialize, Deserialize)]
pub struct FeedPodcast {
    /// Its metadata.
    #[serde(flatten)]
    pub info: PodcastInfo,
    /// Its episodes.
    pub episodes: Vec<Episode>,
}

/// What `populate_podcast_metadata` stores about a podcast.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodcastInfo {
    /// A stable id (`wasm-hour`).
    pub id: String,
    /// Its title.
    pub title: String,
    /// Who hosts it.
    pub host: String,
    /// A line about it.
    pub description: String,
    /// Episodes in the feed (filled in by `fetch_episodes`).
    #[serde(default)]
    pub episodes: usize,
}

/// One episode: its "audio" is the text the stand-in model transcribes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Episode {
    /// A stable id, unique across podcasts.
    pub id: String,
    /// The podcast it belongs to (filled in by `fetch_episodes`).
    #[serde(default)]
    pub podcast: String,
    /// Its title.
    pub title: String,
    /// When it was published (`2026-11-02`).
    pub published: String,
    /// The "recording".
    pub audio: String,
}

/// A piece of an episode handed to `transcribe_segment`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Segment {
    /// Its place in the episode, from 0.
    pub index: usize,
    /// Seconds from the start of the episode.
    pub start: f64,
    /// Its "audio".
    pub audio: String,
}

/// A transcribed segment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    /// Seconds from the start of the episode.
    pub start: f64,
    /// Seconds from the start where it ends.
    pub end: f64,
    /// What was said.
    pub text: String,
}

/// An episode's transcript, as stored in bucket `transcripts`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Transcript {
    /// The episode.
    pub episode: String,
    /// Its podcast.
    pub podcast: String,
    /// The episode's title.
    pub title: String,
    /// Its lines, in order.
    pub lines: Vec<Line>,
}

/// Where a term occurs: an episode and one of its lines.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hit {
    /// The episode.
    pub episode: String,
    /// The line's index in the transcript.
    pub line: usize,
}

/// What `refresh_index` built, stored at key `meta` of bucket `index`.
#[derive(Debug, Serialize, Deserialize)]
pub struct IndexMeta {
    /// Transcripts indexed.
    pub episodes: usize,
    /// Distinct terms.
    pub terms: usize,
}

/// What one `fetch_episodes` run did.
#[derive(Debug, Serialize, Deserialize)]
pub struct FetchReport {
    /// Podcasts in the feed.
    pub podcasts: usize,
    /// Episodes in the feed.
    pub episodes: usize,
    /// Episodes transcribed by this run (the others already were).
    pub transcribed: usize,
}

/// One answer of `search_podcast`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SearchResult {
    /// The podcast's id.
    pub podcast: String,
    /// The episode's id.
    pub episode: String,
    /// The episode's title.
    pub title: String,
    /// Where the best line starts, in seconds.
    pub at: f64,
    /// The best line.
    pub text: String,
    /// Occurrences of the query's terms in the episode.
    pub score: usize,
}

/// The lower-case words of `text` (letters and digits), as indexed.
fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() > 1)
        .map(str::to_lowercase)
}

/// Splits an episode's audio into segments of `SEGMENT_WORDS` words.
fn segments(audio: &str) -> Vec<Segment> {
    let words: Vec<&str> = audio.split_whitespace().collect();
    words
        .chunks(SEGMENT_WORDS)
        .enumerate()
        .map(|(index, chunk)| Segment {
            index,
            start: (index * SEGMENT_WORDS) as f64 / WORDS_PER_SECOND,
            audio: chunk.join(" "),
        })
        .collect()
}

/// Reads the feed: `FEED_URL` over HTTP with the API key, else the
/// mounted sample.
fn read_feed(key: &str) -> Result<Feed, String> {
    let bytes = match std::env::var("FEED_URL") {
        Ok(url) => {
            let auth = format!("Bearer {key}");
            let response = modal_guest::fetch("GET", &url, &[("authorization", &auth)], b"")?;
            if response.status != 200 {
                return Err(format!("the feed at {url} answered {}", response.status));
            }
            response.body
        }
        Err(_) => std::fs::read(SAMPLE_FEED).map_err(|e| {
            format!(
                "no feed: set FEED_URL in the `podcast-feed` secret or mount one at /feed \
                 (--mount examples/podcasts/feed:/feed): {e}"
            )
        })?,
    };
    modal_guest::json::from_slice(&bytes).map_err(|e| format!("the feed is not valid: {e}"))
}

#[modal_guest::app]
mod podcasts {
    use super::*;
    use modal_guest::{CallFailure, Request, Response};

    /// Fetches the feed, stores every podcast and transcribes the episodes
    /// not transcribed yet.
    #[function(schedule = period("1h"), timeout = "5m", secrets = ["podcast-feed"])]
    fn fetch_episodes() -> Result<FetchReport, String> {
        let key = std::env::var("PODCAST_API_KEY")
            .map_err(|_| "PODCAST_API_KEY is not set: attach the `podcast-feed` secret")?;
        // Logged as a debugging aid would be: the host replaces the key
        // with *** before the line is stored.
        println!("fetching the feed with api key {key}");
        let feed = read_feed(&key)?;
        let podcasts = feed.podcasts.len();
        let episodes: usize = feed.podcasts.iter().map(|p| p.episodes.len()).sum();
        let infos = feed.podcasts.iter().map(|p| PodcastInfo {
            episodes: p.episodes.len(),
            ..p.info.clone()
        });
        for stored in populate_podcast_metadata::map(infos) {
            stored?;
        }
        let stored = Dict::open("episodes")?;
        let done = Dict::open("transcripts")?;
        let mut new = Vec::new();
        for podcast in feed.podcasts {
            for mut episode in podcast.episodes {
                if done.contains(&episode.id)? {
                    continue;
                }
                episode.podcast = podcast.info.id.clone();
                stored.put(&episode.id, &episode)?;
                new.push(episode.id);
            }
        }
        let mut transcribed = 0;
        for (id, result) in new.iter().zip(transcribe_episode::map(new.clone())) {
            match result {
                Ok(lines) => {
                    println!("transcribed {id} ({lines} lines)");
                    transcribed += 1;
                }
                Err(e) => eprintln!("transcribing {id} failed: {e}"),
            }
        }
        println!("{episodes} episodes in the feed, {transcribed} newly transcribed");
        Ok(FetchReport {
            podcasts,
            episodes,
            transcribed,
        })
    }

    /// Stores a podcast's metadata in bucket `podcasts`; returns its id.
    #[function]
    fn populate_podcast_metadata(info: PodcastInfo) -> Result<String, String> {
        let podcasts = Dict::open("podcasts")?;
        podcasts.put(&info.id, &info)?;
        Ok(info.id)
    }

    /// Transcribes a stored episode, its segments in parallel; returns the
    /// number of lines.
    #[function(timeout = "2m")]
    fn transcribe_episode(id: String) -> Result<usize, String> {
        let episode: Episode = Dict::open("episodes")?
            .get(&id)?
            .ok_or_else(|| format!("no episode `{id}`"))?;
        let lines = transcribe_segment::map(segments(&episode.audio))
            .into_iter()
            .collect::<Result<Vec<Line>, CallFailure>>()?;
        let count = lines.len();
        let transcript = Transcript {
            episode: episode.id,
            podcast: episode.podcast,
            title: episode.title,
            lines,
        };
        Dict::open("transcripts")?.put(&id, &transcript)?;
        Ok(count)
    }

    /// "Transcribes" one segment: a deterministic stand-in for a speech
    /// model that turns the segment's audio into a timed line of text.
    #[function(max_instances = 4)]
    fn transcribe_segment(segment: Segment) -> Line {
        let words: Vec<&str> = segment.audio.split_whitespace().collect();
        let mut text = words.join(" ");
        if let Some(first) = text.get(..1) {
            text = first.to_uppercase() + &text[1..];
        }
        Line {
            start: segment.start,
            end: segment.start + words.len() as f64 / WORDS_PER_SECOND,
            text,
        }
    }

    /// Rebuilds the search index (bucket `index`) from every transcript.
    #[function(schedule = period("10m"), timeout = "5m")]
    fn refresh_index() -> Result<IndexMeta, String> {
        let transcripts = Dict::open("transcripts")?;
        let ids = transcripts.keys()?;
        let mut postings: BTreeMap<String, Vec<Hit>> = BTreeMap::new();
        let mut episodes = 0;
        for transcript in transcripts
            .get_many::<Transcript>(&ids)?
            .into_iter()
            .flatten()
        {
            episodes += 1;
            for (line, l) in transcript.lines.iter().enumerate() {
                let words: BTreeSet<String> = terms(&l.text).collect();
                for word in words {
                    postings
                        .entry(format!("term:{word}"))
                        .or_default()
                        .push(Hit {
                            episode: transcript.episode.clone(),
                            line,
                        });
                }
            }
        }
        let index = Dict::open("index")?;
        let entries: Vec<(String, Vec<Hit>)> = postings.into_iter().collect();
        for batch in entries.chunks(BATCH) {
            index.put_many(batch)?;
        }
        // Terms no transcript has any more are dropped.
        let live: BTreeSet<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        for key in index.keys()? {
            if key.starts_with("term:") && !live.contains(key.as_str()) {
                index.delete(&key)?;
            }
        }
        let meta = IndexMeta {
            episodes,
            terms: entries.len(),
        };
        index.put("meta", &meta)?;
        println!("indexed {} terms of {episodes} episodes", meta.terms);
        Ok(meta)
    }

    /// The episodes that say every word of `query`, best first.
    #[function]
    fn search_podcast(query: String) -> Result<Vec<SearchResult>, String> {
        let words: BTreeSet<String> = terms(&query).collect();
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let index = Dict::open("index")?;
        let keys: Vec<String> = words.iter().map(|w| format!("term:{w}")).collect();
        let postings = index.get_many::<Vec<Hit>>(&keys)?;
        // Episode -> line -> occurrences of the terms; an episode must have
        // every term.
        let mut found: BTreeMap<String, BTreeMap<usize, usize>> = BTreeMap::new();
        for (n, hits) in postings.into_iter().enumerate() {
            let Some(hits) = hits else {
                return Ok(Vec::new());
            };
            let mut seen = BTreeSet::new();
            for hit in hits {
                if n > 0 && !found.contains_key(&hit.episode) {
                    continue;
                }
                *found
                    .entry(hit.episode.clone())
                    .or_default()
                    .entry(hit.line)
                    .or_default() += 1;
                seen.insert(hit.episode);
            }
            found.retain(|episode, _| seen.contains(episode));
        }
        let mut ranked: Vec<(String, usize, usize)> = found
            .into_iter()
            .map(|(episode, lines)| {
                let score = lines.values().sum();
                let best = lines
                    .iter()
                    .max_by_key(|(line, count)| (**count, std::cmp::Reverse(**line)))
                    .map_or(0, |(line, _)| *line);
                (episode, score, best)
            })
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(MAX_RESULTS);
        let transcripts = Dict::open("transcripts")?;
        let ids: Vec<String> = ranked.iter().map(|r| r.0.clone()).collect();
        let stored = transcripts.get_many::<Transcript>(&ids)?;
        Ok(ranked
            .into_iter()
            .zip(stored)
            .filter_map(|((episode, score, best), transcript)| {
                let transcript = transcript?;
                let line = transcript.lines.get(best)?;
                Some(SearchResult {
                    podcast: transcript.podcast.clone(),
                    episode,
                    title: transcript.title.clone(),
                    at: line.start,
                    text: line.text.clone(),
                    score,
                })
            })
            .collect())
    }

    /// The frontend (`/assets/...`, from the mount) and the JSON API.
    #[function(web(method = "GET"))]
    fn web(req: Request) -> Response {
        if req.path() == "/assets" || req.path().starts_with("/assets/") {
            return modal_guest::serve_dir(&req, "/assets", "/assets");
        }
        api(&req).unwrap_or_else(|e| Response::json(&error(&e)).with_status(500))
    }

    /// The JSON API under `/api/`.
    fn api(req: &Request) -> Result<Response, String> {
        let path = req.path();
        if path == "/api/search" {
            let query = req.query("q").unwrap_or_default();
            return Ok(Response::json(&search_podcast::remote(query)?));
        }
        if path == "/api/podcasts" {
            let podcasts = Dict::open("podcasts")?;
            let all: Vec<PodcastInfo> = podcasts
                .get_many(&podcasts.keys()?)?
                .into_iter()
                .flatten()
                .collect();
            return Ok(Response::json(&all));
        }
        if path == "/api/status" {
            let index: Option<IndexMeta> = Dict::open("index")?.get("meta")?;
            let transcribed = Dict::open("transcripts")?.keys()?.len();
            return Ok(Response::json(&modal_guest::json::json!({
                "transcribed": transcribed,
                "index": index,
            })));
        }
        if let Some(id) = path.strip_prefix("/api/episodes/") {
            return Ok(match Dict::open("transcripts")?.get::<Transcript>(id)? {
                Some(t) => Response::json(&t),
                None => Response::json(&error(&format!("no episode `{id}`"))).with_status(404),
            });
        }
        Ok(Response::json(&error("not found; the app is at assets/index.html")).with_status(404))
    }

    fn error(message: &str) -> modal_guest::json::Value {
        modal_guest::json::json!({ "error": message })
    }
}
