"""Incidents and their videos: create/update (merge by video id), read, list, download."""
