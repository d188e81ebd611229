module keybroker

go 1.19
