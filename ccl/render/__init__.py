"""Images of a trained field away from the evaluation: single views (`ccl render --frame`), camera paths
and their videos (`ccl render --path`)."""
