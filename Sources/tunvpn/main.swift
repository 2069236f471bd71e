print("tunvpn")
