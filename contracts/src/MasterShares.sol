// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title MasterShares: the ERC-721 shares of one music master.
/// @notice Deployed by MasterFactory as an EIP-1167 clone of one implementation, then initialised
///         in the same transaction. OZ 5's ERC721/Ownable set their state in constructors, which a
///         clone never runs, so: name()/symbol() are constants, the owner is set in initialize(),
///         and a private flag guards initialize() (the implementation itself is locked at
///         construction).
/// @dev Token ids start at 1 and are sequential in mint order; there is no burn, so ids
///      1..totalMinted all exist.
contract MasterShares is ERC721, Ownable {
    uint256 public constant MAX_BATCH = 250;

    bytes32 public masterId;
    address public artist;
    address public vault;
    uint256 public maxSupply;
    uint256 public totalMinted;
    string private _uri;
    bool private _initialized;
    mapping(bytes32 opId => bool) public opUsed;

    event MasterRegistered(bytes32 masterId, address artist);
    event MaxSupplySet(uint256 maxSupply);
    event BatchMinted(bytes32 indexed opId, address indexed to, uint256 firstId, uint256 count);

    error AlreadyInitialized();
    error ZeroAddress();
    error MaxSupplyAlreadySet();
    error InvalidMaxSupply();
    error InvalidCount(uint256 count);
    error OpAlreadyUsed(bytes32 opId);
    error ExceedsMaxSupply(uint256 totalMinted, uint256 count, uint256 maxSupply);
    error NotOwnerNorOperator(address from, address caller);

    constructor() ERC721("", "") Ownable(msg.sender) {
        _initialized = true; // the implementation can never be initialised
    }

    /// @notice Called once by the factory right after cloning.
    function initialize(
        bytes32 masterId_,
        address artist_,
        address vault_,
        address owner_,
        string calldata tokenURI_
    ) external {
        if (_initialized) revert AlreadyInitialized();
        if (artist_ == address(0) || vault_ == address(0) || owner_ == address(0)) {
            revert ZeroAddress();
        }
        _initialized = true;
        masterId = masterId_;
        artist = artist_;
        vault = vault_;
        _uri = tokenURI_;
        _transferOwnership(owner_);
        emit MasterRegistered(masterId_, artist_);
    }

    function name() public pure override returns (string memory) {
        return "AudiFi Master Share";
    }

    function symbol() public pure override returns (string memory) {
        return "AFS";
    }

    /// @notice The master's metadata URI (e.g. ipfs://<cid>), the same for every existing share.
    function tokenURI(uint256 id) public view override returns (string memory) {
        _requireOwned(id);
        return _uri;
    }

    function setMaxSupply(uint256 max) external onlyOwner {
        if (maxSupply != 0) revert MaxSupplyAlreadySet();
        if (max == 0) revert InvalidMaxSupply();
        maxSupply = max;
        emit MaxSupplySet(max);
    }

    /// @notice Mints `count` shares with ids totalMinted+1 .. totalMinted+count to `to`.
    /// @param opId Idempotency key of the platform job; a replayed opId reverts, so a retried job
    ///        can never mint twice.
    function batchMint(address to, uint256 count, bytes32 opId)
        external
        onlyOwner
        returns (uint256 firstId)
    {
        if (count == 0 || count > MAX_BATCH) revert InvalidCount(count);
        if (opUsed[opId]) revert OpAlreadyUsed(opId);
        uint256 minted = totalMinted;
        uint256 max = maxSupply;
        if (max == 0 || minted + count > max) revert ExceedsMaxSupply(minted, count, max);
        opUsed[opId] = true;
        firstId = minted + 1;
        uint256 end = minted + count;
        totalMinted = end;
        for (uint256 id = firstId; id <= end; ++id) {
            _mint(to, id);
        }
        emit BatchMinted(opId, to, firstId, count);
    }

    /// @notice Moves `ids` from `from` to `to`. Only `from` itself or an operator it approved with
    ///         setApprovalForAll may call this: the platform cannot move shares out of a user's wallet.
    function batchTransfer(address from, address to, uint256[] calldata ids) external {
        if (msg.sender != from && !isApprovedForAll(from, msg.sender)) {
            revert NotOwnerNorOperator(from, msg.sender);
        }
        uint256 n = ids.length;
        for (uint256 i = 0; i < n; ++i) {
            _transfer(from, to, ids[i]); // reverts unless `from` owns ids[i]; rejects to == 0
        }
    }
}
