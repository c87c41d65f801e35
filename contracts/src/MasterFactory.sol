// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {MasterShares} from "./MasterShares.sol";
import {DividendVault} from "./DividendVault.sol";

/// @title MasterFactory: creates the MasterShares + DividendVault pair of every master.
/// @notice One implementation of each is deployed by the constructor; every master gets two
///         EIP-1167 clones (CREATE2, salt = masterId, so addresses are predictable) initialised in
///         the same transaction. This keeps createMaster cheap and the factory far below EIP-170.
contract MasterFactory is Ownable {
    struct Master {
        address shares;
        address vault;
    }

    address public immutable sharesImplementation;
    address public immutable vaultImplementation;
    mapping(bytes32 masterId => Master) private _masters;

    event MasterCreated(bytes32 indexed masterId, address shares, address vault, address artist);

    error MasterExists(bytes32 masterId);
    error ZeroAddress();

    constructor() Ownable(msg.sender) {
        sharesImplementation = address(new MasterShares());
        vaultImplementation = address(new DividendVault());
    }

    /// @notice Deploys the shares (owned by this factory's owner) and the vault of `masterId`.
    function createMaster(bytes32 masterId, address artist, string calldata tokenURI_)
        external
        onlyOwner
        returns (address shares, address vault)
    {
        if (_masters[masterId].shares != address(0)) revert MasterExists(masterId);
        if (artist == address(0)) revert ZeroAddress();
        shares = Clones.cloneDeterministic(sharesImplementation, masterId);
        vault = Clones.cloneDeterministic(vaultImplementation, masterId);
        _masters[masterId] = Master(shares, vault);
        DividendVault(payable(vault)).initialize(shares, masterId);
        MasterShares(shares).initialize(masterId, artist, vault, owner(), tokenURI_);
        emit MasterCreated(masterId, shares, vault, artist);
    }

    /// @notice (0, 0) when `masterId` was never created.
    function mastersOf(bytes32 masterId) external view returns (address shares, address vault) {
        Master memory m = _masters[masterId];
        return (m.shares, m.vault);
    }

    /// @notice The addresses createMaster(masterId, ...) deploys (or deployed) to.
    function predictMaster(bytes32 masterId) external view returns (address shares, address vault) {
        shares = Clones.predictDeterministicAddress(sharesImplementation, masterId);
        vault = Clones.predictDeterministicAddress(vaultImplementation, masterId);
    }
}
