"""The demo faces: the synthetic drone flight through the real nodes (run), its report, and bag playback (play)."""
