"""The Hogwild machinery shared by every sb3_async algorithm."""
