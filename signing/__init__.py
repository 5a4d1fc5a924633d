"""Remote signing: CMS/CAdES signatures, the CSC API and signature verification."""
