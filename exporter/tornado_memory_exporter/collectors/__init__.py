"""prometheus_client collectors: each reads one source (psutil, gc, the loop probe, the latest
census snapshot) at scrape time and keeps no per-scrape state."""
