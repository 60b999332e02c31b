"""A profile's regrets, measured apart from the code that produced the profile."""

from aggregame.solvers.certify.scan import Certificate, CertificateMethod, certify

__all__ = ["Certificate", "CertificateMethod", "certify"]
