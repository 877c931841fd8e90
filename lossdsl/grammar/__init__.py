"""The Lark grammar of the `.loss` language (`loss.lark`), shipped as package data."""
