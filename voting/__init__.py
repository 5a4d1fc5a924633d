"""Voting context: meetings, ballots, Company Act rules, tally and the ballot log."""
