"""A profile's regrets, measured apart from the code that produced the profile."""

from aggregame.solvers.certify.certificate import (
                                                   CERTIFICATE_RTOL,
                                                   Certificate,
                                                   CertificateMethod,
                                                   PlayerRegret,
                                                   Verdict,
)
from aggregame.solvers.certify.scan import certify

__all__ = ["CERTIFICATE_RTOL", "Certificate", "CertificateMethod", "PlayerRegret",
           "Verdict", "certify"]
