from sb3_async.a3c.a3c import A3C

__all__ = ["A3C"]
